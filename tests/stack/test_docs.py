"""docs/metrics.md and the metric catalogues say the same thing."""

from __future__ import annotations

import dataclasses
import re

from opentelemetry.metrics import Counter, Histogram, UpDownCounter
from prometheus_client.parser import text_string_to_metric_families

from hw_collector.instruments import CATALOGUE, register
from otel_proxy.finished import FinishedRequest
from otel_proxy.instruments import ProxyInstruments
from ollama_otel_stack.telemetry import setup_telemetry
from tests.support.harness import ROOT

TYPE_NAMES = {"counter": "counter", "histogram": "histogram", "gauge": "gauge"}


def documented(section: str) -> dict[str, str]:
    """{prometheus name: type} from the table between <!-- section --> markers."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    table = text.split(f"<!-- {section} -->")[1].split(f"<!-- /{section} -->")[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z_:]+)` \| (\w+) \|", table, re.M)}


def exported(instruments: object | None, telemetry) -> dict[str, str]:
    """Record once on every (synchronous) instrument and read back the Prometheus families."""
    for recorder in vars(instruments).values() if instruments is not None else ():
        instrument = getattr(recorder, "instrument", recorder)  # the proxy's are wrapped in Recorders
        if isinstance(instrument, (Counter, UpDownCounter)):
            instrument.add(1)
        elif isinstance(instrument, Histogram):
            instrument.record(1)
    families = text_string_to_metric_families(telemetry.prometheus_text().decode())
    names = {}
    for family in families:
        if family.name == "target_info":
            continue
        assert family.documentation, f"{family.name} has no HELP text"
        names[family.name + ("_total" if family.type == "counter" else "")] = family.type
    return names


def own(names: dict[str, str]) -> dict[str, str]:
    return {name: kind for name, kind in names.items() if not name.startswith(("process_resident", "process_virtual", "process_cpu_seconds", "process_open_fds", "process_max_fds", "process_start_time", "python_"))}


def test_hw_collector_metrics_table_matches_the_catalogue():
    telemetry = setup_telemetry("hw-collector", "test", environ={})
    snapshot = {spec.name: [(1.0, {})] for spec in CATALOGUE}
    register(telemetry.meter("hw_collector"), lambda: snapshot)
    names = exported(None, telemetry)
    assert documented("hw-metrics") == own(names)


def test_proxy_metrics_table_matches_the_catalogue():
    telemetry = setup_telemetry("otel-proxy", "test", environ={})
    names = exported(ProxyInstruments(telemetry.meter("otel_proxy")), telemetry)
    assert "process_resident_memory_bytes" in telemetry.prometheus_text().decode()
    assert documented("proxy-metrics") == own(names)


def test_the_requests_schema_is_the_finished_requests_fields():
    text = (ROOT / "docs" / "metrics.md").read_text()
    listed = text.split("<!-- requests-schema -->")[1].split("<!-- /requests-schema -->")[0]
    assert re.findall(r"`(\w+)`", listed) == [field.name for field in dataclasses.fields(FinishedRequest)]
