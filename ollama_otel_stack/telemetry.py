"""The OpenTelemetry set-up both services share: resource, readers, exporters.

The SDK is configured in code, but the standard environment variables still rule:
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` shape the resource,
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal ``..._TRACES_ENDPOINT`` /
``..._METRICS_ENDPOINT``) turns on OTLP/HTTP export, and ``OTEL_TRACES_EXPORTER`` /
``OTEL_METRICS_EXPORTER`` (``otlp``, ``console``, ``none``, comma-separated) choose
the exporters explicitly. Prometheus pull on ``/metrics`` is always on; each
service gets its own registry so two services can live in one test process.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
from urllib.parse import unquote
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Tracer
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ollama_otel_stack.prometheus_page import PageReader

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST
_OTLP_ENDPOINT_VARIABLES = {
    "traces": ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    "metrics": ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
}
_KNOWN_EXPORTERS = {"otlp", "console", "none"}
# The fast paths that stand in for a library's own (each fails tests/stack/test_shortcuts.py when an
# upgrade breaks it, and each has its differential test): the proxy's metric records
# (otel_proxy/recorder.py), the span encoder (otlp_spans.py) and the Prometheus page
# (prometheus_page.py). OLLAMA_OTEL_SHORTCUTS names the ones on (default all; "none" for the
# libraries' own paths everywhere), so the benchmarks can measure each against the library.
SHORTCUTS = frozenset({"metric_records", "span_encoder", "prometheus_page"})


def shortcuts_from(environ: Mapping[str, str]) -> frozenset[str]:
    chosen = environ.get("OLLAMA_OTEL_SHORTCUTS", "").strip().lower()
    if not chosen or chosen == "all":
        return SHORTCUTS
    names = {name.strip() for name in chosen.split(",") if name.strip()} - {"none"}
    for unknown in sorted(names - SHORTCUTS):
        log.warning("OLLAMA_OTEL_SHORTCUTS: %s is not a shortcut (%s, all or none); ignored", unknown, ", ".join(sorted(SHORTCUTS)))
    return frozenset(names & SHORTCUTS)


def exporters_for(signal: str, environ: Mapping[str, str]) -> set[str]:
    """Which push exporters a signal ("traces" or "metrics") uses under this environment."""
    chosen = environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower()
    if not chosen:
        has_endpoint = any(environ.get(name) for name in _OTLP_ENDPOINT_VARIABLES[signal])
        return {"otlp"} if has_endpoint else set()
    names = {name.strip() for name in chosen.split(",") if name.strip()}
    for unknown in sorted(names - _KNOWN_EXPORTERS):
        log.warning("OTEL_%s_EXPORTER=%s is not supported here (use otlp, console or none); ignored", signal.upper(), unknown)
    return names & {"otlp", "console"}


def build_resource(default_service_name: str, instance_id: str, environ: Mapping[str, str]) -> Resource:
    """The resource: OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME, win over our defaults."""
    attributes: dict[str, str] = {
        "service.name": default_service_name,
        "service.namespace": "ollama-monitoring",
        "service.instance.id": instance_id,
        "host.name": socket.gethostname(),
    }
    for pair in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, separator, value = pair.partition("=")
        if separator and key.strip():
            attributes[key.strip()] = unquote(value.strip())
        elif pair.strip():
            log.warning("OTEL_RESOURCE_ATTRIBUTES: %r is not key=value; ignored", pair)
    if environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = environ["OTEL_SERVICE_NAME"]
    return Resource.create({}).merge(Resource(attributes))


@dataclass
class Telemetry:
    """What a service needs from OpenTelemetry: its meter, tracer and Prometheus registry.

    ``span_processor`` is every span processor of the tracer provider (exporters included),
    for spans reported whole once they have ended (see otel_proxy/spans.py). ``shortcuts``:
    the fast paths switched on (``SHORTCUTS``).
    """

    resource: Resource
    meter_provider: MeterProvider
    tracer_provider: TracerProvider
    registry: CollectorRegistry
    span_processor: SpanProcessor
    shortcuts: frozenset[str] = SHORTCUTS
    page: PageReader | None = None  # the SDK's part of the page, when the prometheus_page shortcut is on
    _rendering: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def meter(self, name: str) -> Meter:
        return self.meter_provider.get_meter(name)

    def tracer(self, name: str) -> Tracer:
        return self.tracer_provider.get_tracer(name)

    def prometheus_text(self) -> bytes:
        """The /metrics page, with no cyclic garbage collection while it renders.

        A render allocates an object or more per series; on the SDK's tens of thousands of
        series, a full collection those allocations set off holds the GIL, and every stream
        of the proxy with it, for tens of milliseconds (docs/benchmarks.md, "Scrapes and
        streams"). What a render makes is freed by reference counting when it ends.
        """
        with self._rendering:  # one page at a time: the collector's switch is the process's
            enabled = gc.isenabled()
            gc.disable()
            try:
                page = generate_latest(self.registry)
                return page + self.page.render() if self.page is not None else page
            finally:
                if enabled:
                    gc.enable()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def sampler_for(exporting: bool, environ: Mapping[str, str]) -> Sampler | None:
    """The SDK's sampler from OTEL_TRACES_SAMPLER; without it, spans nobody exports are not recorded.

    With no trace exporter, recording spans only to drop them costs the proxy a tenth of a
    millisecond a request. ``parentbased_always_off`` still gives every request real trace
    and span ids (passed on to Ollama in ``traceparent``, listed by /-/requests), and still
    records a trace whose caller sampled it.
    """
    if environ.get("OTEL_TRACES_SAMPLER") or exporting:
        return None  # the SDK's own choice: OTEL_TRACES_SAMPLER, else parentbased_always_on
    return ParentBased(ALWAYS_OFF)


def setup_telemetry(
    default_service_name: str,
    instance_id: str,
    *,
    environ: Mapping[str, str] | None = None,
    extra_span_processors: Sequence[SpanProcessor] = (),
    extra_metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Build providers for one service. Nothing global is set here; ``__main__`` may do that."""
    environ = os.environ if environ is None else environ
    resource = build_resource(default_service_name, instance_id, environ)
    shortcuts = shortcuts_from(environ)

    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):  # the service's own RSS, fds, GC
        registry.register(collector)
    page = PageReader() if "prometheus_page" in shortcuts else None
    readers: list[MetricReader] = [page or PrometheusMetricReader(registry=registry, scope_info_enabled=False)]
    metric_exporters = exporters_for("metrics", environ)
    if "otlp" in metric_exporters:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if "console" in metric_exporters:
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    meter_provider = MeterProvider(resource=resource, metric_readers=[*readers, *extra_metric_readers], shutdown_on_exit=False)

    trace_exporters = exporters_for("traces", environ)
    processors: list[SpanProcessor] = []
    if "otlp" in trace_exporters:
        from ollama_otel_stack.otlp_spans import LeanOTLPSpanExporter, PreEncodingSpanProcessor  # the SDK's exporter, a faster encoder

        if "span_encoder" in shortcuts:
            exporter = LeanOTLPSpanExporter()
            batch = BatchSpanProcessor(exporter)
            processors.append(PreEncodingSpanProcessor(batch, exporter.encoder) if exporter.lean else batch)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in trace_exporters:
        processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
    processors.extend(extra_span_processors)
    tracer_provider = TracerProvider(resource=resource, sampler=sampler_for(bool(processors), environ), shutdown_on_exit=False)
    span_processor = SynchronousMultiSpanProcessor()
    for processor in processors:
        span_processor.add_span_processor(processor)
    tracer_provider.add_span_processor(span_processor)

    log.info(
        "telemetry for %s: prometheus pull on /metrics; push metrics=%s traces=%s",
        resource.attributes.get("service.name"),
        ",".join(sorted(metric_exporters)) or "none",
        ",".join(sorted(trace_exporters)) or "none",
    )
    return Telemetry(resource, meter_provider, tracer_provider, registry, span_processor, shortcuts, page)
