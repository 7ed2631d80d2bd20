"""The measuring that happens beside the stream: one ``RequestObserver`` per request.

The forwarder tells it what happened (request facts, response status, first chunk,
how the request ended); the observer takes the request's span ids when it arrives, and
after ``finish`` (through the bookkeeper, otel_proxy/bookkeeping.py) turns what it saw
into metrics, the finished spans (otel_proxy/spans.py) and an entry of the
recent-requests log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from otel_proxy import ollama
from otel_proxy.bookkeeping import Bookkeeper
from otel_proxy.clients import ClientNames, family_of
from otel_proxy.config import ProxySettings
from ollama_otel_stack.model_names import ModelCatalog
from otel_proxy.instruments import CONTEXT_FULL, LOAD_REASONS, UNKNOWN_MODEL, ModelNames, ProxyInstruments, method_label
from otel_proxy.ollama import Report, RequestFacts
from otel_proxy.recent import RecentRequests
from otel_proxy.scheduling import Arrival, Decomposition, SchedulerView, changed_options, context_fill
from otel_proxy.spans import UNSET, FinishedSpans
from otel_proxy.watch import NOTHING_TO_WATCH, Watcher, watcher_for

log = logging.getLogger(__name__)

PROVIDER = "ollama"
CLIENT_DISCONNECTED = "client_disconnected"
UNAUTHORIZED = "unauthorized"
RATE_LIMITED = "rate_limited"
REFUSED = frozenset({UNAUTHORIZED, RATE_LIMITED})  # counted in the metrics, kept out of /-/requests
MAX_URL_PATH = 1024  # characters of a path kept in a span's url.path


def _caller_span(headers: Iterable[tuple[bytes, bytes]]) -> SpanContext | None:
    """The span a client's ``traceparent`` names, if it sent a valid one."""
    wanted = {b"traceparent", b"tracestate"}
    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in wanted}
    if not carrier:
        return None
    caller = trace.get_current_span(extract(carrier)).get_span_context()
    return caller if caller.is_valid else None


@dataclass
class ObserverContext:
    """What every observer of one proxy shares."""

    settings: ProxySettings
    instruments: ProxyInstruments
    spans: FinishedSpans
    models: ModelNames
    recent: RecentRequests
    bookkeeper: Bookkeeper
    scheduler: SchedulerView
    catalog: ModelCatalog
    clients: ClientNames
    upstream_host: str
    upstream_port: int
    phases_started: set[str] = field(default_factory=set)  # model labels whose ollama.scheduler.time series exist


class RequestObserver:
    def __init__(self, shared: ObserverContext, scope: dict[str, Any], path: str) -> None:
        """``path``: the request's path as Ollama will see it."""
        self._shared = shared
        self.started = time.perf_counter()
        self._started_ns = time.time_ns()
        self.method: str = method_label(scope["method"])  # a made-up method cannot grow the metrics
        self.route = ollama.route_of(path)
        self.operation = ollama.OPERATIONS.get(self.route)
        self.facts = RequestFacts(None, False)
        self.model_label: str | None = None
        self.status: int | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.first_chunk_at: float | None = None
        self.first_output_at: float | None = None
        self.arrival: Arrival | None = None  # what the proxy knew of Ollama's scheduler when the request arrived
        self._in_flight_attributes: dict[str, Any] | None = None
        self.decomposition = Decomposition()
        self.model: str | None = None  # the model's one name (ollama_otel_stack/model_names.py), as Ollama runs it
        self.watcher: Watcher = NOTHING_TO_WATCH
        self._request_body: bytes | None = None
        self._caller = _caller_span(scope["headers"])
        self.key_name: str | None = None  # the API key's name, when keys are configured and it matched
        self._user_agent = self._client_name = b""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                self._user_agent = value
            elif name == b"x-client-name":
                self._client_name = value
        self.client: str | None = None
        self._server_attributes: dict[str, Any] = {
            "http.request.method": self.method,
            "http.route": self.route,
            "url.path": path[:MAX_URL_PATH],
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        self._server_span = shared.spans.root(self._caller, self._server_name, SpanKind.SERVER, self._server_attributes)
        # A generation's GenAI span sits between the SERVER span and the httpx client span.
        self._genai_span = shared.spans.child(self._server_span) if self.operation is not None else None
        self._genai_attributes: dict[str, Any] | None = None  # once the body was read: the span is reported
        self._active_attributes = {"http.request.method": self.method}
        self._route_attributes = {"http.route": self.route}
        self.ended: float | None = None
        # Counted in by the bookkeeper, in order with the requests before it (after this
        # one is on its way to Ollama): a reader that runs the queue sees it active.
        shared.bookkeeper.defer(self._count_in)

    def _count_in(self) -> None:
        self._shared.instruments.active_requests.add(1, self._active_attributes)

    @property
    def _server_name(self) -> str:
        return f"{self.method} {self.route}"

    # What the forwarder tells the observer -------------------------------------------

    def learn_request(self, body_prefix: bytes, complete: bool) -> None:
        """The body's first bytes: read for the model and ``stream`` flag once the request is on its way."""
        if self.operation is not None:
            self._shared.bookkeeper.defer(lambda: self._learn(body_prefix, complete))

    def _learn(self, body_prefix: bytes, complete: bool) -> None:
        self.facts = ollama.read_request(self.route, body_prefix, complete)
        if self._shared.settings.capture_content and complete:
            self._request_body = body_prefix
        self._genai_attributes = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": self.facts.model or UNKNOWN_MODEL,
            "server.address": self._shared.upstream_host,
            "server.port": self._shared.upstream_port,
        }
        if self.facts.model:
            shared = self._shared
            self.model = shared.catalog.canonical(self.facts.model)
            # Ollama's own /api routes answer with its durations; the OpenAI and Anthropic ones do not.
            self.arrival = shared.scheduler.arrive(self.model, self.facts.options, self.started, timed=self.route.startswith("/api/"))
            self._in_flight_attributes = {"gen_ai.provider.name": PROVIDER, "gen_ai.request.model": shared.models.label(self.model, admit=False)}
            shared.instruments.requests_in_flight.add(1, self._in_flight_attributes)

    def upstream_context(self) -> otel_context.Context:
        """The context the upstream call runs in, so the httpx span nests under ours."""
        return FinishedSpans.context_of(self._genai_span or self._server_span)

    def response_started(self, status: int, content_type: str) -> None:
        self.status = status
        if status >= 500 and self.error_type is None:
            self.error_type = str(status)
        self.watcher = watcher_for(self.route, content_type)

    def first_chunk(self) -> None:
        self.first_chunk_at = at = time.perf_counter()
        if self.operation is not None and self.status == 200:  # an error's body is no hand-over (a 404 for a model Ollama lacks)
            self._shared.bookkeeper.defer(lambda: self.arrival is not None and self._shared.scheduler.responded(self.arrival, at))

    def failed(self, error_type: str, message: str) -> None:
        if self.error_type is None or self.error_type.isdigit():
            self.error_type = error_type
        self.error_message = message

    # The end of the request ------------------------------------------------------------

    def finish(self) -> None:
        """The response is over (its last byte sent, or the request failed): the rest is bookkeeping."""
        self.ended = time.perf_counter()
        self._shared.bookkeeper.defer(self._record)

    def _record(self) -> None:
        ended = self.ended
        assert ended is not None
        duration = ended - self.started
        shared = self._shared
        instruments = shared.instruments
        instruments.active_requests.add(-1, self._active_attributes)

        report = self.watcher.report() if self.status is not None else Report()
        if self.error_message is None and report.error and (self.status or 0) < 400:
            # Ollama's own error answers carry a status; an error inside a 200 stream is a broken response.
            self.error_type = self.error_type or "invalid_response"
        http_attributes: dict[str, Any] = {"http.route": self.route, "http.request.method": self.method}
        if self.status is not None:
            http_attributes["http.response.status_code"] = self.status
        if self.error_type is not None:
            http_attributes["error.type"] = self.error_type
        instruments.request_duration.record(duration, http_attributes)

        # The first chunk carrying output: the first chunk itself, except on the APIs that open with bookkeeping events.
        first_output_at = self.watcher.first_output_at or self.first_chunk_at
        self.first_output_at = first_output_at
        time_to_first_chunk = None if first_output_at is None else first_output_at - self.started
        self.client = self._client_label()
        if self.operation is not None and self.arrival is not None:
            # The account of its time may wait for requests ahead of it in Ollama's queue (otel_proxy/scheduling.py).
            ok = self.status == 200 and self.error_type is None
            shared.scheduler.end(self.arrival, ended, ok, report.load_s)
            if self._in_flight_attributes is not None:
                instruments.requests_in_flight.add(-1, self._in_flight_attributes)
            if ok:
                shared.scheduler.settle(self.arrival, report, lambda parts: self._record_the_rest(report, duration, time_to_first_chunk, ended, parts),
                                        answered_at=first_output_at or ended)
            else:  # a failed request: whether it waited or loaded is not known (a 404 loaded nothing)
                self._record_the_rest(report, duration, time_to_first_chunk, ended, Decomposition())
        else:
            self._record_the_rest(report, duration, time_to_first_chunk, ended, Decomposition())

    def _record_the_rest(self, report: Report, duration: float, time_to_first_chunk: float | None, ended: float, parts: Decomposition) -> None:
        shared = self._shared
        self.decomposition = parts
        if self.operation is not None:
            self._record_client(report, duration)
            # Only names Ollama accepted earn a label of their own: made-up ones (its 404) stay "other".
            self.model_label = shared.models.label(self.model, admit=self.status != 404)
            self._record_generation(report, duration, time_to_first_chunk, ended)

        end_ns = self._started_ns + int(duration * 1e9)
        if self._genai_span is not None and self._genai_attributes is not None:
            self._emit_genai_span(self._genai_span, self._genai_attributes, report, time_to_first_chunk, end_ns)
        if self._server_span.trace_flags.sampled:
            self._emit_server_span(end_ns)

        if self.error_type not in REFUSED:  # refused requests must not push real ones out of the log
            shared.recent.add(self._recent_entry(report, duration, time_to_first_chunk, ended))

    def _client_label(self) -> str:
        """The key's name, else X-Client-Name (bounded), else the User-Agent's family (otel_proxy/clients.py)."""
        if self.key_name is not None:
            return self.key_name
        if self._client_name:
            return self._shared.clients.label(self._client_name.decode("latin-1"))
        return family_of(self._user_agent.decode("latin-1"))

    def _record_client(self, report: Report, duration: float) -> None:
        """Per client, on counters and one duration histogram only: never across the per-model families."""
        instruments = self._shared.instruments
        who = {"ollama.client": self.client}
        instruments.client_requests.add(1, {**who, "error.type": self.error_type} if self.error_type else who)
        instruments.client_request_duration.record(duration, who)
        for kind, tokens in (("input", report.input_tokens), ("output", report.output_tokens)):
            if tokens is not None:
                instruments.client_tokens.add(tokens, {**who, "gen_ai.token.type": kind})

    def _is_streaming_generation(self) -> bool:
        return self.facts.stream and self.operation not in (None, ollama.EMBEDDINGS)

    def _generation_attributes(self) -> dict[str, Any]:
        return {
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.operation.name": self.operation,
            "gen_ai.request.model": self.model_label,
        }

    def _record_generation(self, report: Report, duration: float, ttfc: float | None, ended: float) -> None:
        instruments = self._shared.instruments
        attributes = self._generation_attributes()
        outcome = dict(attributes)
        if self.error_type is not None:
            outcome["error.type"] = self.error_type
        instruments.genai_request_duration.record(duration, outcome)

        if self._is_streaming_generation() and ttfc is not None and self.status == 200:
            instruments.time_to_first_token.record(ttfc, attributes)
            instruments.route_time_to_first_token.record(ttfc, self._route_attributes)
        if report.input_tokens is not None:
            instruments.prompt_tokens.add(report.input_tokens, attributes)
            instruments.token_usage.record(report.input_tokens, {**attributes, "gen_ai.token.type": "input"})
        if report.output_tokens is not None:
            instruments.generated_tokens.add(report.output_tokens, attributes)
            instruments.token_usage.record(report.output_tokens, {**attributes, "gen_ai.token.type": "output"})
        per_token = self._time_per_output_token(report, ended)
        if per_token is not None:
            instruments.time_per_output_token.record(per_token, attributes)
        # Ollama's phases are the model's, whichever API asked: per model only (docs/metrics.md, series budget).
        per_model = {"gen_ai.provider.name": PROVIDER, "gen_ai.request.model": self.model_label}
        parts = self.decomposition
        for histogram, seconds in (
            (instruments.load_duration, report.load_s),
            (instruments.prompt_eval_duration, report.prompt_eval_s),
            (instruments.eval_duration, report.eval_s),
            (instruments.queue_wait, parts.waiting_s),
        ):
            if seconds is not None:
                histogram.record(seconds, per_model)
        self._record_phases(per_model, parts)
        if parts.load_reason in LOAD_REASONS:
            changed = changed_options(parts.reload_cause)  # a reload's only: a cold load has no cause
            instruments.model_loads.add(1, {**per_model, "ollama.load.reason": parts.load_reason, **({"ollama.load.cause": changed} if changed else {})})
        fill = self._context_fill(report)
        if fill is not None:
            instruments.context_fill.record(fill, per_model)
            if fill >= CONTEXT_FULL:
                instruments.context_full.add(1, per_model)

    def _record_phases(self, per_model: dict[str, Any], parts: Decomposition) -> None:
        """ollama.scheduler.time: each phase that took time; the pending wait by the model it waited behind."""
        counter = self._shared.instruments.scheduler_time
        phases = (("pending", None), ("drain", parts.drain_s), ("load", parts.load_s), ("slot", parts.slot_s), ("unknown", parts.unknown_s))
        label = per_model.get("gen_ai.request.model")
        if label not in self._shared.phases_started:  # each phase's series from 0, so that rate() counts its first wait
            self._shared.phases_started.add(label)
            for phase, _ in phases:
                counter.add(0.0, {**per_model, "ollama.phase": phase})
        for phase, seconds in phases[1:]:
            if seconds:
                counter.add(seconds, {**per_model, "ollama.phase": phase})
        # ollama.behind names another model whose load held this one up; waiting for its own model's load has none.
        own = parts.pending_s or 0.0
        for behind, seconds in parts.behind:
            if behind != self.model:
                counter.add(seconds, {**per_model, "ollama.phase": "pending", "ollama.behind": self._shared.models.label(behind, admit=False)})
                own -= seconds
        if own > 1e-9:
            counter.add(own, {**per_model, "ollama.phase": "pending"})

    def _context_fill(self, report: Report) -> float | None:
        length = self.arrival.context_length if self.arrival is not None else None
        return context_fill(report.input_tokens, report.output_tokens, length)

    def _streamed_generation_s(self, ended: float) -> float | None:
        """From the first streamed output to the end: the generation time of an answer Ollama did not time.
        None for an answer that came in one piece (its last chunk's microseconds are no generation time)."""
        if not self._is_streaming_generation() or self.first_output_at is None or ended <= self.first_output_at:
            return None
        return ended - self.first_output_at

    def _time_per_output_token(self, report: Report, ended: float) -> float | None:
        if report.eval_s and report.output_tokens:
            return report.eval_s / report.output_tokens
        streamed = self._streamed_generation_s(ended)
        if streamed is not None and report.output_tokens and report.output_tokens > 1:
            return streamed / (report.output_tokens - 1)
        return None

    def _emit_server_span(self, end_ns: int) -> None:
        attributes = self._server_attributes
        if self.status is not None:
            attributes["http.response.status_code"] = self.status
        status = UNSET
        if self.error_type is not None:
            attributes["error.type"] = self.error_type
            if self.status is None or self.status >= 500 or not self.error_type.isdigit():
                status = Status(StatusCode.ERROR, self.error_message)
        self._shared.spans.emit(self._server_name, self._server_span, self._caller, SpanKind.SERVER, attributes, self._started_ns, end_ns, status)

    def _emit_genai_span(self, span: SpanContext, attributes: dict[str, Any], report: Report, ttfc: float | None, end_ns: int) -> None:
        if not span.trace_flags.sampled:
            return
        # The model as Ollama ran it (its one name); gen_ai.request.model stays as the client sent it.
        if self.model and not ollama.is_cloud_model(self.facts.model):
            attributes["gen_ai.response.model"] = self.model
        elif report.response_model:
            attributes["gen_ai.response.model"] = report.response_model
        if report.input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = report.input_tokens
        if report.output_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = report.output_tokens
        if report.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = (report.finish_reason,)
        # Whether the answer reasoned or called tools, and where the model ran: never any text.
        attributes["ollama.response.reasoning"] = report.reasoning
        attributes["ollama.response.tool_calls"] = report.tool_calls
        attributes["ollama.model.cloud"] = ollama.is_cloud_model(self.facts.model)
        attributes["ollama.client"] = self.client or ""
        if ttfc is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = ttfc
        status = UNSET
        if self.error_type is not None:
            attributes["error.type"] = self.error_type
            status = Status(StatusCode.ERROR, self.error_message or report.error)
        if self._shared.settings.capture_content and self._request_body is not None:
            attributes["gen_ai.input.messages"] = _input_messages(self._request_body)
        self._emit_phase_spans(span, report, end_ns)
        name = f"{self.operation} {self.facts.model or ''}".strip()
        self._shared.spans.emit(name, span, self._server_span, SpanKind.CLIENT, attributes, self._started_ns, end_ns, status)

    def _emit_phase_spans(self, parent: SpanContext, report: Report, end_ns: int) -> None:
        """Ollama's phases on the timeline, back to back as Ollama runs them and ending with the last chunk:
        the pending wait behind loads (ollama.queue), the drain before a reload (ollama.drain) and the load
        (ollama.load) that make up load_duration, the wait for a slot (ollama.slot_wait), then prompt
        evaluation and generation; each as wide as its real share of the request."""
        parts = self.decomposition
        load_attributes: dict[str, Any] = {}
        if parts.load_reason is not None:
            load_attributes["ollama.load.reason"] = parts.load_reason
        if parts.reload_cause:
            load_attributes["ollama.load.cause"] = parts.reload_cause
        queue_attributes = {"ollama.behind": tuple(model for model, _ in parts.behind)} if parts.behind else {}
        if parts.unknown_s is not None:
            head = [("ollama.load", parts.unknown_s, {"ollama.load.reason": "unknown"})]  # not told apart: one span, said so
        else:
            head = [("ollama.queue", parts.pending_s, queue_attributes), ("ollama.drain", parts.drain_s, {}), ("ollama.load", parts.load_s, load_attributes)]
        phases = [
            (name, round(seconds * 1e9), attributes)
            for name, seconds, attributes in (*head, ("ollama.slot_wait", parts.slot_s, {}), ("ollama.prompt_eval", report.prompt_eval_s, {}), ("ollama.eval", report.eval_s, {}))
            if seconds  # a phase that took no time (no load) has no span
        ]
        cursor = max(self._started_ns, end_ns - sum(length for _, length, _ in phases))
        spans = self._shared.spans
        for name, length, attributes in phases:
            spans.emit(name, spans.child(parent), parent, SpanKind.INTERNAL, attributes, cursor, cursor + length)
            cursor += length

    def _recent_entry(self, report: Report, duration: float, ttfc: float | None, ended: float) -> dict[str, Any]:
        context = self._server_span
        parts = self.decomposition
        tokens_per_second = None
        streamed = self._streamed_generation_s(ended)
        if report.output_tokens and report.eval_s:
            tokens_per_second = report.output_tokens / report.eval_s
        elif report.output_tokens and streamed is not None:
            tokens_per_second = report.output_tokens / streamed
        return {
            "start_time": datetime.fromtimestamp(self._started_ns / 1e9, tz=timezone.utc).isoformat(),
            "trace_id": format(context.trace_id, "032x"),
            "trace_sampled": context.trace_flags.sampled,
            "method": self.method,
            "client": self.client,
            "route": self.route,
            "operation": self.operation,
            "model": self.model if self.model_label not in (None, "other") else self.model_label,
            "requested_model": self.facts.model,
            "stream": self.facts.stream,
            "status": self.status,
            "duration_s": duration,
            "time_to_first_token_s": ttfc if self._is_streaming_generation() and self.status == 200 else None,
            "input_tokens": report.input_tokens,
            "output_tokens": report.output_tokens,
            "tokens_per_second": tokens_per_second,
            "load_duration_s": report.load_s,  # Ollama's, whole: pending, drain and load (or unknown) are its parts
            "queue_wait_s": parts.waiting_s,  # pending, drain and slot wait together
            "pending_wait_s": parts.pending_s,
            "waited_behind": [model for model, _ in parts.behind],
            "drain_s": parts.drain_s,
            "load_s": parts.load_s,
            "unknown_s": parts.unknown_s,
            "load_reason": parts.load_reason,
            "reload_cause": parts.reload_cause,
            "slot_wait_s": parts.slot_s,
            "prompt_eval_s": report.prompt_eval_s,
            "eval_s": report.eval_s,
            "ollama_total_s": report.total_s,
            # The rest of Ollama's time (parsing, templating, tokenizing) and the proxy's own (network, relaying):
            # with the parts above they add up to duration_s.
            "ollama_other_s": _rest(report.total_s, parts.pending_s, parts.drain_s, parts.load_s, parts.unknown_s, parts.slot_s, report.prompt_eval_s, report.eval_s),
            "proxy_s": _rest(duration, report.total_s),
            "context_length": self.arrival.context_length if self.arrival is not None else None,
            "context_fill": self._context_fill(report),
            "error_type": self.error_type,
            "error": self.error_message or report.error,
            "finish_reason": report.finish_reason,
            "reasoning": report.reasoning,
            "tool_calls": report.tool_calls,
            "cloud": ollama.is_cloud_model(self.facts.model),
        }


def _rest(whole: float | None, *parts: float | None) -> float | None:
    """``whole`` less its known ``parts`` (never below 0), or None when the whole is not known."""
    if whole is None:
        return None
    return max(0.0, whole - sum(part or 0.0 for part in parts))


def _input_messages(body: bytes) -> str:
    """The prompt as JSON, recorded only when the user opted in to message capture."""
    parsed = ollama.parse_json(body)
    if not isinstance(parsed, dict):
        return ""
    if "messages" in parsed:
        return json.dumps(parsed["messages"])
    prompt = parsed.get("prompt", parsed.get("input"))
    return json.dumps([{"role": "user", "content": prompt}])
