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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from ollama_otel_stack.telemetry import Telemetry
from otel_proxy.finished import FinishedRequest

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


def caller_span(headers: Iterable[tuple[bytes, bytes]]) -> SpanContext | None:
    """The span a client's ``traceparent`` names, if it sent a valid one."""
    wanted = {b"traceparent", b"tracestate"}
    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in wanted}
    if not carrier:
        return None
    caller = trace.get_current_span(extract(carrier)).get_span_context()
    return caller if caller.is_valid else None


class RequestSpans:
    """One request's spans: their ids taken as it arrives (the upstream call nests under them), the spans
    written whole from the finished request.

    The SERVER span; for a generation, its GenAI span (between the SERVER span and the call to Ollama);
    and under that, Ollama's phases on the timeline."""

    def __init__(self, spans: FinishedSpans, headers: Iterable[tuple[bytes, bytes]], name: str, attributes: dict[str, Any], generation: bool) -> None:
        self._spans = spans
        self._caller = caller_span(headers)
        self._name = name
        self._attributes = attributes
        self.server = spans.root(self._caller, name, SpanKind.SERVER, attributes)
        self.genai = spans.child(self.server) if generation else None

    def upstream_context(self) -> Context:
        """The context the call to Ollama runs in, so its CLIENT span nests under ours."""
        return FinishedSpans.context_of(self.genai or self.server)

    def emit(self, finished: FinishedRequest, started_ns: int, genai: dict[str, Any] | None, input_messages: str | None) -> None:
        """``genai``: the GenAI span's attributes known at arrival (None: it is not reported); ``input_messages``:
        the prompt, only where the user opted in to capturing it."""
        end_ns = started_ns + round(finished.duration_s * 1e9)
        if self.genai is not None and genai is not None and self.genai.trace_flags.sampled:
            self._emit_genai(finished, genai, input_messages, started_ns, end_ns)
        if self.server.trace_flags.sampled:
            self._emit_server(finished, started_ns, end_ns)

    def _emit_server(self, finished: FinishedRequest, started_ns: int, end_ns: int) -> None:
        attributes = self._attributes
        if finished.status is not None:
            attributes["http.response.status_code"] = finished.status
        status = UNSET
        if finished.error_type is not None:
            attributes["error.type"] = finished.error_type
            if finished.status is None or finished.status >= 500 or not finished.error_type.isdigit():
                status = Status(StatusCode.ERROR, finished.error)
        self._spans.emit(self._name, self.server, self._caller, SpanKind.SERVER, attributes, started_ns, end_ns, status)

    def _emit_genai(self, finished: FinishedRequest, attributes: dict[str, Any], input_messages: str | None, started_ns: int, end_ns: int) -> None:
        assert self.genai is not None
        if finished.response_model:
            attributes["gen_ai.response.model"] = finished.response_model
        if finished.input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = finished.input_tokens
        if finished.output_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = finished.output_tokens
        if finished.prompt_cached_tokens is not None:  # included in gen_ai.usage.input_tokens, as the conventions ask
            attributes["gen_ai.usage.cache_read.input_tokens"] = finished.prompt_cached_tokens
        if finished.cache_miss is not None:  # a turn that read its conversation again (otel_proxy/continuations.py)
            attributes["ollama.cache.cause"] = finished.cache_miss
            attributes["ollama.cache.read_again_tokens"] = finished.read_again_tokens or 0
            if finished.history_changed_at is not None:
                attributes["ollama.cache.history_changed_at"] = finished.history_changed_at
        if finished.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = (finished.finish_reason,)
        # Whether the answer reasoned or called tools, and where the model ran: never any text.
        attributes["ollama.response.reasoning"] = finished.reasoning
        attributes["ollama.response.tool_calls"] = finished.tool_calls
        attributes["ollama.model.cloud"] = finished.cloud
        attributes["ollama.client"] = finished.client or ""
        if finished.session is not None:
            attributes["gen_ai.conversation.id"] = finished.session  # the agent's session, hashed
        if finished.first_output is not None:
            attributes["ollama.response.first_output"] = finished.first_output
        if finished.time_to_first_token_s is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = finished.time_to_first_token_s
        status = UNSET
        if finished.error_type is not None:
            attributes["error.type"] = finished.error_type
            status = Status(StatusCode.ERROR, finished.error)
        if input_messages is not None:
            attributes["gen_ai.input.messages"] = input_messages
        self._emit_phases(finished, started_ns, end_ns)
        name = f"{finished.operation} {finished.requested_model or ''}".strip()
        self._spans.emit(name, self.genai, self.server, SpanKind.CLIENT, attributes, started_ns, end_ns, status)

    def _emit_phases(self, finished: FinishedRequest, started_ns: int, end_ns: int) -> None:
        """Ollama's phases on the timeline, back to back as Ollama runs them and ending with the last chunk:
        the pending wait behind loads (ollama.queue), the drain before a reload (ollama.drain) and the load
        (ollama.load) that make up load_duration, the wait for a slot (ollama.slot_wait), then prompt
        evaluation and generation; each as wide as its real share of the request."""
        parent = self.genai
        assert parent is not None
        load_attributes: dict[str, Any] = {}
        if finished.load_reason is not None:
            load_attributes["ollama.load.reason"] = finished.load_reason
        if finished.reload_cause:
            load_attributes["ollama.load.cause"] = finished.reload_cause
        queue_attributes = {"ollama.behind": finished.waited_behind} if finished.waited_behind else {}
        if finished.unknown_s is not None:
            head = [("ollama.load", finished.unknown_s, {"ollama.load.reason": "unknown"})]  # not told apart: one span, said so
        else:
            head = [("ollama.queue", finished.pending_wait_s, queue_attributes), ("ollama.drain", finished.drain_s, {}), ("ollama.load", finished.load_s, load_attributes)]
        phases = [
            (name, round(seconds * 1e9), attributes)
            for name, seconds, attributes in (*head, ("ollama.slot_wait", finished.slot_wait_s, {}), ("ollama.prompt_eval", finished.prompt_eval_s, {}),
                                              ("ollama.eval", finished.eval_s, {}))
            if seconds  # a phase that took no time (no load) has no span
        ]
        cursor = max(started_ns, end_ns - sum(length for _, length, _ in phases))
        spans = self._spans
        for name, length, attributes in phases:
            spans.emit(name, spans.child(parent), parent, SpanKind.INTERNAL, attributes, cursor, cursor + length)
            cursor += length
