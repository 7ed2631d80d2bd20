"""Spans of every kind the services make: live SDK spans, and the finished ones otel_proxy.spans builds."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState, set_span_in_context


ATTRIBUTES = {
    "http.route": "/api/generate",
    "http.response.status_code": 200,
    "gen_ai.usage.output_tokens": 0,
    "negative": -5,
    "large": 2**62,
    "gen_ai.response.time_to_first_chunk": 0.0123,
    "zero.float": 0.0,
    "flag.true": True,
    "flag.false": False,
    "empty": "",
    "unicode": "modèle 🦙",
    "gen_ai.response.finish_reasons": ("stop",),
    "ints": (1, 2, 3),
    "floats": (0.5, -1.5),
    "bools": (True, False),
}



def sdk_spans() -> list[ReadableSpan]:
    """Live SDK spans: remote parents, trace state, events, errors, every attribute type, two scopes."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-proxy", "service.instance.id": "a"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    caller = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "x1"), ("other", "y")]))
    tracer = provider.get_tracer("otel_proxy", "1.0", schema_url="https://opentelemetry.io/schemas/1.26.0")
    with tracer.start_as_current_span("POST /api/chat", context=set_span_in_context(NonRecordingSpan(caller)), kind=SpanKind.SERVER, attributes=ATTRIBUTES) as server:
        with provider.get_tracer("opentelemetry.instrumentation.httpx").start_as_current_span("POST", kind=SpanKind.CLIENT) as client:
            client.set_attribute("url.full", "http://127.0.0.1:11434/api/chat")
            client.record_exception(ValueError("upstream reset"))
            client.add_event("retry", {"attempt": 2, "reasons": ("a", "b")})
            client.set_status(Status(StatusCode.ERROR, "upstream_reset"))
        server.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("no attributes"):
        pass
    return list(exporter.get_finished_spans())



def finished_spans() -> list[ReadableSpan]:
    """ReadableSpans as otel_proxy.spans builds them: a resource of their own, a scope without a version."""
    resource = Resource.create({"service.name": "otel-proxy"})
    scope = InstrumentationScope("otel_proxy")
    parent = SpanContext(7, 8, is_remote=False, trace_flags=TraceFlags(1))
    return [
        ReadableSpan(name="ollama.eval", context=SpanContext(7, 9 + i, False, TraceFlags(1)), parent=parent, resource=resource, attributes={}, kind=SpanKind.INTERNAL,
                     start_time=1_700_000_000_000_000_000 + i, end_time=1_700_000_000_500_000_000, instrumentation_scope=scope)
        for i in range(3)
    ] + [ReadableSpan(name="chat llama3.2:1b", context=parent, parent=None, resource=resource, attributes=ATTRIBUTES, kind=SpanKind.CLIENT, start_time=1, end_time=2, instrumentation_scope=scope)]
