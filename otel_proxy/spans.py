"""The proxy's own spans, reported whole when a request ends.

A request's SERVER span, its GenAI span and Ollama's phase spans are only fully known
at the end (Ollama reports its phases in the last chunk). Instead of keeping live SDK
spans open and setting attributes on them as the request goes, the observer takes their
ids when the request arrives (the httpx client span and Ollama's ``traceparent`` need
them before anything is sent) and hands finished ``ReadableSpan``s to the tracer
provider's span processors at the end. Exporters receive the same spans; the request's
path pays for two ids instead of two live spans (docs/benchmarks.md).

Sampling is the tracer provider's own sampler, asked once per trace; children share
their parent's decision, as the SDK's parent-based samplers would decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from ollama_otel_stack.telemetry import Telemetry

Attributes = Mapping[str, AttributeValue]
UNSET = Status(StatusCode.UNSET)


class FinishedSpans:
    def __init__(self, telemetry: Telemetry, scope: str) -> None:
        provider = telemetry.tracer_provider
        self._sampler = provider.sampler
        self._ids = provider.id_generator
        self._processor = telemetry.span_processor
        self._resource = telemetry.resource
        self._scope = InstrumentationScope(scope)

    def root(self, parent: SpanContext | None, name: str, kind: SpanKind, attributes: Attributes) -> SpanContext:
        """The context of a request's first span: a child of the caller's span, or a new trace."""
        trace_id = parent.trace_id if parent is not None else self._ids.generate_trace_id()
        parent_context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        decision = self._sampler.should_sample(parent_context, trace_id, name, kind, attributes)
        flags = TraceFlags(TraceFlags.SAMPLED if decision.decision.is_sampled() else TraceFlags.DEFAULT)
        return SpanContext(trace_id, self._ids.generate_span_id(), is_remote=False, trace_flags=flags, trace_state=decision.trace_state)

    def child(self, parent: SpanContext) -> SpanContext:
        return SpanContext(parent.trace_id, self._ids.generate_span_id(), False, parent.trace_flags, parent.trace_state)

    @staticmethod
    def context_of(span: SpanContext) -> Context:
        """An OpenTelemetry context whose current span is ``span`` (for spans others start under it)."""
        return trace.set_span_in_context(NonRecordingSpan(span))

    def emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Attributes,
        start_ns: int,
        end_ns: int,
        status: Status = UNSET,
        events: Sequence[Event] = (),
    ) -> None:
        """Report a finished span to every span processor, if its trace is sampled."""
        if not context.trace_flags.sampled:
            return
        span = ReadableSpan(
            name=name,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=kind,
            status=status,
            events=events,
            start_time=start_ns,
            end_time=end_ns,
            instrumentation_scope=self._scope,
        )
        self._processor.on_end(span)
