"""otlp_spans writes the OTLP bytes the SDK's encoder writes, for every kind of span the services make."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags

from ollama_otel_stack.otlp_spans import PRE_ENCODED_LIMIT, PreEncodingSpanProcessor, SpanEncoder
from tests.support.spans import finished_spans, sdk_spans


def test_the_bytes_decode_to_what_the_sdk_encodes_and_are_the_same_bytes():
    spans = sdk_spans() + finished_spans()
    expected = encode_spans(spans)
    encoder = SpanEncoder()
    for _ in range(2):  # the second time from the cached resource, scope and attribute bytes
        ours = encoder.encode(spans)
        assert ExportTraceServiceRequest.FromString(ours) == expected
        assert ours == expected.SerializePartialToString()
    decoded = ExportTraceServiceRequest.FromString(ours)
    assert len(decoded.resource_spans) == 2
    assert sum(len(scope.spans) for resource in decoded.resource_spans for scope in resource.scope_spans) == len(spans)


def test_a_full_attribute_cache_is_emptied_not_grown():
    encoder = SpanEncoder(attribute_cache_size=8)
    spans = finished_spans()
    assert encoder.encode(spans) == encode_spans(spans).SerializePartialToString()
    assert len(encoder._attributes) <= 8


def test_what_it_does_not_handle_goes_through_the_sdks_encoder():
    span = finished_spans()[0]
    linked = ReadableSpan(name="linked", context=span.context, resource=span.resource, links=[Link(SpanContext(1, 2, False), {"k": "v"})],
                          kind=SpanKind.INTERNAL, start_time=1, end_time=2, instrumentation_scope=span.instrumentation_scope)
    odd = ReadableSpan(name="odd", context=span.context, resource=span.resource, attributes={"set": frozenset({1})}, kind=SpanKind.INTERNAL, start_time=1, end_time=2)
    no_status = ReadableSpan(name="no status", context=span.context, resource=span.resource, status=None, kind=SpanKind.INTERNAL, start_time=1, end_time=2)
    for batch in ([span, linked], [odd], [no_status, span]):
        assert SpanEncoder().encode(batch) == encode_spans(batch).SerializePartialToString()


def test_values_that_compare_equal_but_encode_differently_are_not_confused_by_the_cache():
    resource = Resource.create({})
    encoder = SpanEncoder()
    for attributes in ({"v": True}, {"v": 1}, {"v": 1.0}, {"v": 0.0}, {"v": -0.0}, {"v": (True,)}, {"v": (1,)}, {"v": ("1",)}):
        span = ReadableSpan(name="s", context=SpanContext(1, 2, False), resource=resource, attributes=attributes, kind=SpanKind.INTERNAL, start_time=1, end_time=2)
        assert encoder.encode([span]) == encode_spans([span]).SerializePartialToString(), attributes


def test_spans_encoded_as_they_end_export_the_same_bytes_and_are_not_encoded_again():
    spans = sdk_spans() + finished_spans()
    encoder = SpanEncoder()
    for span in spans:
        encoder.pre_encode(span)
    encoded_at_export: list[str] = []
    span_encoder = encoder._span

    def counting(span: ReadableSpan) -> bytes:
        encoded_at_export.append(span.name)
        return span_encoder(span)

    encoder._span = counting  # type: ignore[method-assign]
    assert encoder.encode(spans) == encode_spans(spans).SerializePartialToString()
    assert encoded_at_export == []
    assert encoder._pre_encoded == {}  # taken at export: nothing held on to
    assert encoder.encode(spans) == encode_spans(spans).SerializePartialToString()  # encoded at export this time
    assert len(encoded_at_export) == len(spans)


def test_the_pre_encoding_processor_encodes_sampled_spans_and_passes_every_span_on():
    exporter = InMemorySpanExporter()
    encoder = SpanEncoder()
    processor = PreEncodingSpanProcessor(SimpleSpanProcessor(exporter), encoder)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with provider.get_tracer("test").start_as_current_span("sampled"):
        pass
    span = finished_spans()[0]
    recorded_not_sampled = ReadableSpan(name="recorded, not sampled", context=SpanContext(5, 6, False, TraceFlags(0)), resource=span.resource,
                                        kind=SpanKind.INTERNAL, start_time=1, end_time=2)
    processor.on_end(recorded_not_sampled)
    encoded = list(encoder._pre_encoded)
    assert [span.name for span in encoded] == ["sampled"]
    assert [span.name for span in exporter.get_finished_spans()] == ["sampled"]  # the inner processor saw both, exported the sampled one
    assert encoder.encode(encoded) == encode_spans(encoded).SerializePartialToString()
    assert processor.force_flush() is True


def test_spans_encoded_but_never_exported_are_forgotten_past_the_limit():
    encoder = SpanEncoder()
    span = finished_spans()[0]
    for index in range(PRE_ENCODED_LIMIT + 10):
        encoder.pre_encode(ReadableSpan(name=f"s{index}", context=span.context, resource=span.resource, kind=SpanKind.INTERNAL, start_time=1, end_time=2))
    assert len(encoder._pre_encoded) <= PRE_ENCODED_LIMIT
