"""ollama_otel_stack/prometheus_page.py against the library path it replaces.

One MeterProvider feeds both readers: opentelemetry-exporter-prometheus's
``PrometheusMetricReader`` (as ollama_otel_stack/telemetry.py configured it before:
``scope_info_enabled=False``) rendered by prometheus_client's ``generate_latest``, and
``PageReader``. Every case the exporter handles is recorded, and the pages must be equal
byte for byte, at the first scrape and at later ones (where PageReader reuses its text).
"""

from __future__ import annotations

import math
import time

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from ollama_otel_stack.prometheus_page import PageReader

RESOURCE = Resource(
    {"service.name": "otel-proxy", "service.instance.id": "a\"b\\c\nd", "host.name": "hôte", "process.pid": 42, "ratio": 0.5, "flag": True, "tags": ("x", "y")}
)


class Both:
    """The library's page and PageReader's, from one provider."""

    def __init__(self, views: tuple = (), resource: Resource = RESOURCE) -> None:
        self.registry = CollectorRegistry()
        self.library = PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)
        self.page = PageReader()
        self.provider = MeterProvider(resource=resource, metric_readers=[self.library, self.page], views=list(views), shutdown_on_exit=False)

    def pages(self) -> tuple[str, str]:
        return generate_latest(self.registry).decode(), self.page.render().decode()

    def assert_equal(self) -> str:
        library, ours = self.pages()
        assert ours == library
        return ours


def test_nothing_recorded_is_an_empty_page_for_both():
    both = Both()
    both.provider.get_meter("m").create_counter("c")
    assert both.pages() == ("", "") and both.page.render() == b""


def test_counters_updowncounters_and_gauges_with_every_kind_of_attribute():
    both = Both()
    meter = both.provider.get_meter("m")
    requests = meter.create_counter("http.server.requests", unit="{request}", description="Requests.\nOne per \\answer")
    tokens = meter.create_counter("ollama_tokens_total", unit="1", description="already ends in _total")
    queue = meter.create_up_down_counter("queue-depth", unit="By")
    gauge = meter.create_gauge("temperature", unit="Cel")
    requests.add(1, {"model": "llama3.2:1b", "route": "/api/chat"})
    requests.add(2, {"model": 'q"u\\o\nte', "route": "/v1/messages", "extra.key": "only here"})
    requests.add(3, {})
    requests.add(4, {"a.b": "dotted", "a_b": "underscored", "1st": "digit", "ünï": "code"})
    requests.add(5, {"n": 7, "f": 0.25, "t": True, "none_str": "", "seq": ("a", "b"), "nums": (1, 2)})
    tokens.add(10**12, {"type": "input"})
    tokens.add(0.5, {"type": "output"})
    queue.add(-3, {"k": "v"})
    queue.add(2)
    gauge.set(float("nan"), {"sensor": "a"})
    gauge.set(float("inf"), {"sensor": "b"})
    gauge.set(-float("inf"), {"sensor": "c"})
    gauge.set(1234567.5, {"sensor": "d"})
    gauge.set(1e-9, {"sensor": "e"})
    page = both.assert_equal()
    assert "http_server_requests_total{" in page and "target_info{" in page and "1.2345675e+06" in page  # the SDK drops NaN and infinities itself
    requests.add(1, {"model": "llama3.2:1b", "route": "/api/chat"})
    gauge.set(3.0, {"sensor": "a"})
    second = both.assert_equal()
    assert second != page  # the cached text of a changed series is written again


def test_histograms_default_custom_negative_and_empty_bounds():
    views = (
        View(instrument_name="custom", aggregation=ExplicitBucketHistogramAggregation([0, 0.005, 1, 2.5, 10, 1e6, 12345678.0])),
        View(instrument_name="negative", aggregation=ExplicitBucketHistogramAggregation([-1.0, 0.0, 1.0])),
        View(instrument_name="only_inf", aggregation=ExplicitBucketHistogramAggregation([])),
    )
    both = Both(views)
    meter = both.provider.get_meter("m")
    default = meter.create_histogram("gen_ai.client.operation.duration", unit="s", description="d")
    custom = meter.create_histogram("custom", unit="ms")
    advised = meter.create_histogram("advised", unit="By", explicit_bucket_boundaries_advisory=[1, 10, 100])
    negative = meter.create_histogram("negative")
    only_inf = meter.create_histogram("only_inf")
    for value in (0.001, 0.2, 3.0, 7777.0, 0.0):
        default.record(value, {"gen_ai.request.model": "m", "le": "clash"})
        custom.record(value * 1000, {"route": "/api/generate"})
        advised.record(value, {})
        negative.record(value - 1)
        only_inf.record(value, {"x": "y"})
    first = both.assert_equal()
    assert "negative_bucket" in first and "negative_count" not in first  # the exporter writes no count under a negative bucket
    default.record(0.3, {"gen_ai.request.model": "m", "le": "clash"})
    both.assert_equal()
    both.assert_equal()  # nothing moved: every series from its kept text


def test_observable_instruments_and_a_label_key_that_appears_later():
    both = Both()
    meter = both.provider.get_meter("m")
    state = {"extra": False, "value": 1.0}

    def observe(options: CallbackOptions):
        yield Observation(state["value"], {"model": "a"})
        if state["extra"]:
            yield Observation(2 * state["value"], {"model": "b", "gpu": "0"})

    meter.create_observable_gauge("ollama.memory", [observe], unit="By")
    meter.create_observable_counter("energy", [observe], unit="J")
    meter.create_observable_up_down_counter("loaded", [observe])
    both.assert_equal()
    state.update(extra=True, value=3.5)
    page = both.assert_equal()  # every row now carries gpu="" or gpu="0": the kept text must not be reused
    assert 'gpu=""' in page
    state.update(extra=False)
    both.assert_equal()  # a series gone is gone from both


def test_two_scopes_merge_a_family_and_a_second_description_makes_another():
    both = Both()
    first, second = both.provider.get_meter("one"), both.provider.get_meter("two", version="2")
    first.create_counter("shared", description="same").add(1, {"a": "1"})
    second.create_counter("shared", description="same").add(2, {"b": "2"})
    second.create_counter("shared", description="other").add(3, {"c": "3"})
    page = both.assert_equal()
    assert page.count("# TYPE shared_total counter") == 2


def test_the_cardinality_overflow_series():
    both = Both()
    counter = both.provider.get_meter("m").create_counter("many")
    for index in range(2_100):
        counter.add(1, {"id": str(index)})
    page = both.assert_equal()
    assert 'otel_metric_overflow="true"' in page


@pytest.mark.parametrize("unit", ["s", "ms", "By", "KiBy", "1", "%", "{token}", "By/s", "tokens", "W", "J", "Cel", "m/s", "1/s", ""])
def test_every_unit_mapping(unit):
    both = Both(resource=Resource({}))
    meter = both.provider.get_meter("m")
    meter.create_counter("c_" + str(abs(hash(unit)) % 1000), unit=unit).add(1.5)
    meter.create_histogram("h", unit=unit).record(math.pi)
    meter.create_up_down_counter("u", unit=unit).add(-1)
    both.assert_equal()


def test_a_page_reader_on_a_provider_that_never_registered_it_renders_nothing():
    assert PageReader().render() == b""


def test_the_proxy_s_own_page_after_traffic_on_every_api():
    """The proxy's real instruments, fed by requests on each API, streamed and not, and an error."""
    import httpx

    from tests.support.harness import fake_ollama
    from tests.support.in_process import InProcessProxy

    registry = CollectorRegistry()
    library = PrometheusMetricReader(registry=registry, scope_info_enabled=False)
    messages = [{"role": "user", "content": "hi"}]
    with fake_ollama(token_delay=0.0005, load_delay=0) as fake, InProcessProxy(fake.url, metric_readers=(library,)) as proxy:
        with httpx.Client(base_url=proxy.url, timeout=30) as client:
            for stream in (False, True):
                client.post("/api/generate", json={"model": "llama3.2:1b", "prompt": "hi", "stream": stream}).raise_for_status()
                client.post("/api/chat", json={"model": "llama3.2:1b", "messages": messages, "stream": stream}).raise_for_status()
                client.post("/v1/chat/completions", json={"model": "llama3.2:1b", "messages": messages, "stream": stream}).raise_for_status()
                client.post("/v1/messages", json={"model": "llama3.2:1b", "max_tokens": 8, "messages": messages, "stream": stream}).raise_for_status()
                client.post("/v1/responses", json={"model": "llama3.2:1b", "input": "hi", "stream": stream}).raise_for_status()
            assert client.post("/api/chat", json={"model": "missing:1b", "messages": messages}).status_code == 404
            client.get("/api/tags").raise_for_status()
        page = proxy.telemetry.page
        assert page is not None
        # A streamed answer is recorded just after its last byte: compare once two pages of ours agree around theirs.
        deadline = time.monotonic() + 10
        while True:
            before, theirs, ours = page.render().decode(), generate_latest(registry).decode(), page.render().decode()
            if before == ours or time.monotonic() > deadline:
                break
    assert ours == theirs
    assert 'ollama_client_requests_total{' in ours or "gen_ai_client_operation_duration_seconds_bucket{" in ours
