"""The measuring that happens beside the stream: one ``RequestObserver`` per request.

The forwarder tells it what happened (request facts, response status, first chunk, how the
request ended). After ``finish``, through the bookkeeper (otel_proxy/bookkeeping.py) and once
the scheduler view can account for its time, it derives the finished request once
(otel_proxy/finished.py) and hands it to the metric records below, the spans
(otel_proxy/spans.py) and the recent-requests log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from otel_proxy import ollama
from otel_proxy.bookkeeping import Bookkeeper
from otel_proxy.clients import Caller
from otel_proxy.in_flight import InFlight, InFlightRequest
from otel_proxy.config import ProxySettings
from otel_proxy.continuations import Continuation, Conversations, Fingerprint, Fingerprints, Outcome
from otel_proxy.finished import FinishedRequest, Observed, finish
from otel_proxy.instruments import LOAD_REASONS, PHASES, ProxyInstruments
from otel_proxy.labels import BoundedNames, method_label
from otel_proxy.ollama import Report, RequestFacts
from otel_proxy.recent import RecentRequests
from otel_proxy.scheduling import Decomposition, SchedulerView, changed_options
from otel_proxy.spans import FinishedSpans, RequestSpans
from otel_proxy.watch import NOTHING_TO_WATCH, TOOL_CALL, Watcher, watcher_for
from ollama_otel_stack.model_names import ModelCatalog

log = logging.getLogger(__name__)
NO_ATTRIBUTES: dict[str, Any] = {}  # otel_proxy.added.duration: one series for the process

PROVIDER = "ollama"
CLIENT_DISCONNECTED = "client_disconnected"
UNAUTHORIZED = "unauthorized"
RATE_LIMITED = "rate_limited"
INVALID_TARGET = "invalid_target"
REFUSED = frozenset({UNAUTHORIZED, RATE_LIMITED, INVALID_TARGET})  # counted in the metrics, kept out of /-/requests
UNAUTHENTICATED = "unauthenticated"  # the client label of a request refused at or before the key check: never a name it chose
MAX_URL_PATH = 1024  # characters of a path kept in a span's url.path
STREAMS = ("application/x-ndjson", "text/event-stream")  # the content types of Ollama's streamed answers
FINGERPRINT_WAIT_S = 1.0  # the most a finished request waits for its body's fingerprint (a few ms for 1.5 MiB)


@dataclass
class ObserverContext:
    """What every observer of one proxy shares."""

    settings: ProxySettings
    instruments: ProxyInstruments
    spans: FinishedSpans
    models: BoundedNames
    recent: RecentRequests
    bookkeeper: Bookkeeper
    scheduler: SchedulerView
    catalog: ModelCatalog
    clients: BoundedNames
    upstream_host: str
    upstream_port: int
    fingerprints: Fingerprints | None = None  # None: conversations are not followed (--conversations 0)
    conversations: Conversations = field(default_factory=Conversations)
    ollama_version: Callable[[], str | None] = lambda: None  # Ollama's, as /api/version last said (otel_proxy/ps_poller.py)
    phases_started: set[str] = field(default_factory=set)  # model labels whose ollama.scheduler.time series exist
    in_flight: InFlight = field(default_factory=InFlight)  # the generation requests on their way now (/-/in-flight)


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
        self.status: int | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.first_chunk_at: float | None = None
        self.ended: float | None = None
        self.added_s: float | None = None  # the proxy's own hold: see handed_on and answer_head
        self._answer_at = 0.0
        self.serial: int | None = None  # the request in the scheduler view (otel_proxy/scheduling.py), once its model is known
        self._in_flight_attributes: dict[str, Any] | None = None
        self.model: str | None = None  # the model's one name (ollama_otel_stack/model_names.py), as Ollama runs it
        self.watcher: Watcher = NOTHING_TO_WATCH
        self._report: Report | None = None  # read once, when the response ended
        self._request_body: bytes | None = None
        self.body_parts: list[bytes] | None = None  # a long generation body's parts as they pass, for its fingerprint
        self._fingerprint: Future[Fingerprint] | None = None
        self.key_name: str | None = None  # the API key's name, when keys are configured and it matched
        self.caller = Caller.of(scope["headers"])
        self.streamed = False  # Ollama's answer is a stream (its content type)
        self._spans = RequestSpans(
            shared.spans, scope["headers"], f"{self.method} {self.route}",
            {
                "http.request.method": self.method,
                "http.route": self.route,
                "url.path": path[:MAX_URL_PATH],
                "url.scheme": scope.get("scheme", "http"),
                "network.protocol.version": scope.get("http_version", "1.1"),
            },
            generation=self.operation is not None,
        )
        self._genai_attributes: dict[str, Any] | None = None  # once the body was read: the span is reported
        self._active_attributes = {"http.request.method": self.method}
        # Counted in by the bookkeeper, in order with the requests before it (after this
        # one is on its way to Ollama): a reader that runs the queue sees it active.
        shared.bookkeeper.defer(self._count_in)

    def _count_in(self) -> None:
        self._shared.instruments.active_requests.add(1, self._active_attributes)

    # What the forwarder tells the observer -------------------------------------------

    def learn_request(self, body_prefix: bytes, complete: bool) -> None:
        """The body's first bytes: read for the model and ``stream`` flag once the request is on its way. A generation's
        body is fingerprinted too (otel_proxy/continuations.py), in the worker thread, once it is all in."""
        if self.operation is None:
            return
        follow = self._shared.fingerprints is not None and self.operation != ollama.EMBEDDINGS
        if follow and not complete:
            self.body_parts = [body_prefix]  # the forwarder adds the rest as it passes, then calls body_read
        self._shared.bookkeeper.defer(lambda: self._learn(body_prefix, complete, follow and complete))

    def body_read(self) -> None:
        """The rest of a long body has passed (``body_parts``)."""
        parts, self.body_parts = self.body_parts, None
        if parts is not None:
            self._shared.bookkeeper.defer(lambda: self._fingerprint_of(parts))

    def _fingerprint_of(self, parts: list[bytes]) -> None:
        assert self._shared.fingerprints is not None
        self._fingerprint = self._shared.fingerprints.submit(parts)

    def _learn(self, body_prefix: bytes, complete: bool, fingerprint: bool) -> None:
        if fingerprint:
            self._fingerprint_of([body_prefix])
        self.facts = ollama.read_request(self.route, body_prefix, complete)
        if self._shared.settings.capture_content and complete:
            self._request_body = body_prefix
        self._genai_attributes = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": self.facts.model or "unknown",
            "server.address": self._shared.upstream_host,
            "server.port": self._shared.upstream_port,
        }
        if self.facts.model:
            shared = self._shared
            self.model = shared.catalog.canonical(self.facts.model)
            # A cloud model goes to ollama.com before Ollama's scheduler (server/routes.go: the modelSourceCloud branch
            # returns before scheduleRunner; cloudPassthroughMiddleware on /v1): no load, no slot, no queue to account.
            if not ollama.is_cloud_model(self.facts.model):
                # Ollama's own /api routes answer with its durations; the OpenAI and Anthropic ones do not.
                self.serial = shared.scheduler.arrive(self.model, self.facts.options, self.started, timed=self.route.startswith("/api/")).serial
            self._in_flight_attributes = {"gen_ai.provider.name": PROVIDER, "gen_ai.request.model": shared.models.label(self.model, admit=False)}
            shared.instruments.requests_in_flight.add(1, self._in_flight_attributes)
            shared.in_flight.add(id(self), InFlightRequest(self._started_ns / 1e9, self.route, self.model, self._client_label()))

    def upstream_context(self) -> Any:
        """The context the upstream call runs in, so the httpx span nests under ours."""
        return self._spans.upstream_context()

    def handed_on(self) -> None:
        """The request goes to Ollama now: the proxy has held it since it arrived (its key checked, its body's
        first part read, its model learnt)."""
        self.added_s = time.perf_counter() - self.started

    def answer_arrived(self) -> None:
        self._answer_at = time.perf_counter()

    def answer_head(self) -> float:
        """Ollama's answer head is passed on now: the proxy's whole hold so far, in seconds."""
        self.added_s = (self.added_s or 0.0) + time.perf_counter() - self._answer_at
        return self.added_s

    def response_started(self, status: int, content_type: str) -> None:
        self.status = status
        self.streamed = content_type.startswith(STREAMS)
        if status >= 500 and self.error_type is None:
            self.error_type = str(status)
        self.watcher = watcher_for(self.route, content_type)

    def first_chunk(self) -> None:
        self.first_chunk_at = at = time.perf_counter()
        if self.operation is not None and self.status == 200:  # an error's body is no hand-over (a 404 for a model Ollama lacks)
            self._shared.bookkeeper.defer(lambda: self._answering(at))

    def _answering(self, at: float) -> None:
        self._shared.in_flight.answering(id(self))
        if self.serial is not None:
            self._shared.scheduler.responded(self.serial, at)

    def answered_whole(self) -> bool:
        """Whether the whole answer has passed (its report complete), read once: asked when the client hangs up."""
        self._report = self.watcher.report()
        return self.watcher is not NOTHING_TO_WATCH and self._report.error is None

    def failed(self, error_type: str, message: str) -> None:
        if self.error_type is None or self.error_type.isdigit():
            self.error_type = error_type
        self.error_message = message

    # The end of the request ------------------------------------------------------------

    def finish(self) -> None:
        """The response is over (its last byte sent, or the request failed): the rest is bookkeeping."""
        self.ended = time.perf_counter()
        self._shared.bookkeeper.defer(self._end)

    def _end(self) -> None:
        ended = self.ended
        assert ended is not None
        shared = self._shared
        shared.instruments.active_requests.add(-1, self._active_attributes)
        report = self._report or (self.watcher.report() if self.status is not None else Report())
        if self.error_message is None and report.error and (self.status or 0) < 400:
            # Ollama's own error answers carry a status; an error inside a 200 stream is a broken response.
            self.error_type = self.error_type or "invalid_response"
        if self._in_flight_attributes is not None:
            shared.instruments.requests_in_flight.add(-1, self._in_flight_attributes)
            shared.in_flight.remove(id(self))
        if self.operation is None or self.serial is None:
            self._finished(report, Decomposition(), None)
            return
        # The account of its time may wait for requests ahead of it in Ollama's queue (otel_proxy/scheduling.py).
        ok = self.status == 200 and self.error_type is None
        arrival = shared.scheduler.end(self.serial, ended, ok, report.load_s)
        if ok:
            shared.scheduler.settle(arrival, report, lambda parts: self._finished(report, parts, arrival.context_length), answered_at=self.first_output_at or ended)
        else:  # a failed request: whether it waited or loaded is not known (a 404 loaded nothing)
            self._finished(report, Decomposition(), arrival.context_length)

    @property
    def first_output_at(self) -> float | None:
        """The first chunk carrying output: the first chunk itself, except on the APIs that open with bookkeeping events."""
        return self.watcher.first_output_at or self.first_chunk_at

    def _client_label(self) -> str:
        """The key's name, else X-Client-Name (bounded), else the User-Agent's family (otel_proxy/clients.py). With keys,
        a request without a valid one is ``unauthenticated``: a stranger cannot add labels or charge a key's name."""
        if self.key_name is not None:
            return self.key_name
        if self._shared.settings.api_keys is not None:
            return UNAUTHENTICATED
        if self.caller.client_name:
            return self._shared.clients.label(self.caller.client_name.decode("latin-1"))
        return self.caller.family()

    def _finished(self, report: Report, parts: Decomposition, context_length: int | None) -> None:
        shared = self._shared
        assert self.ended is not None
        context = self._spans.server
        seen = Observed(
            started=self.started,
            started_ns=self._started_ns,
            ended=self.ended,
            trace_id=context.trace_id,
            trace_sampled=context.trace_flags.sampled,
            method=self.method,
            route=self.route,
            operation=self.operation,
            facts=self.facts,
            status=self.status,
            error_type=self.error_type,
            error_message=self.error_message,
            first_output_at=self.first_output_at,
            streamed=self.streamed,
            client=self._client_label(),
            session=self.caller.session_hash(),
            model=self.model,
            # Only names Ollama accepted earn a label of their own: made-up ones (its 404) stay "other".
            model_label=shared.models.label(self.model, admit=self.status != 404) if self.operation is not None else None,
            context_length=context_length,
            added_s=self.added_s if self.status is not None and self._answer_at else None,
        )
        report = replace(report, cached_input_tokens=ollama.cached_tokens(self.route, report, shared.ollama_version()))
        finished = finish(seen, report, parts, self._continuation(report, parts, context_length))
        self._record(finished)
        self._spans.emit(finished, self._started_ns, self._genai_attributes, self._input_messages())
        if finished.error_type not in REFUSED:  # refused requests must not push real ones out of the log
            shared.recent.add(finished)

    def _continuation(self, report: Report, parts: Decomposition, context_length: int | None) -> Continuation | None:
        """The request's place in its conversation, and the prompt cache it lost (otel_proxy/continuations.py)."""
        if self.model is None or self._fingerprint is None or self.status != 200 or self.error_type is not None:
            return None
        try:
            print_ = self._fingerprint.result(timeout=FINGERPRINT_WAIT_S)  # begun when the body was in: done long since
        except Exception as exc:  # a fault here loses this request's continuation only
            log.warning("a request body could not be fingerprinted: %s", exc)
            return None
        view = self._shared.scheduler.model(self.model)
        outcome = Outcome(self.caller.session_hash(), report.input_tokens, report.cached_input_tokens, view.loads,
                          parts.load_reason if parts.load_reason in LOAD_REASONS else None, view.last_load, context_length,
                          view.slots(self._shared.settings.num_parallel))
        return self._shared.conversations.follow(self.model, print_, outcome)

    def _input_messages(self) -> str | None:
        """The prompt as JSON, only when the user opted in to message capture."""
        if not self._shared.settings.capture_content or self._request_body is None:
            return None
        parsed = ollama.parse_json(self._request_body)
        if not isinstance(parsed, dict):
            return ""
        if "messages" in parsed:
            return json.dumps(parsed["messages"])
        prompt = parsed.get("prompt", parsed.get("input"))
        return json.dumps([{"role": "user", "content": prompt}])

    # The metric records ------------------------------------------------------------------

    def _record(self, finished: FinishedRequest) -> None:
        instruments = self._shared.instruments
        http_attributes: dict[str, Any] = {"http.route": finished.route, "http.request.method": finished.method}
        if finished.status is not None:
            http_attributes["http.response.status_code"] = finished.status
        if finished.error_type is not None:
            http_attributes["error.type"] = finished.error_type
        instruments.request_duration.record(finished.duration_s, http_attributes)
        if finished.proxy_added_s is not None:
            instruments.added_duration.record(finished.proxy_added_s, NO_ATTRIBUTES)
        if finished.operation is not None:
            self._record_client(finished)
            self._record_generation(finished)

    def _record_client(self, finished: FinishedRequest) -> None:
        """Per client, on counters and one duration histogram only: never across the per-model families."""
        instruments = self._shared.instruments
        who = {"ollama.client": finished.client}
        instruments.client_requests.add(1, {**who, "error.type": finished.error_type} if finished.error_type else who)
        instruments.client_request_duration.record(finished.duration_s, who)
        for kind, tokens in (("input", finished.input_tokens), ("output", finished.output_tokens), ("cached_input", finished.prompt_cached_tokens)):
            if tokens is not None:
                instruments.client_tokens.add(tokens, {**who, "gen_ai.token.type": kind})

    def _record_generation(self, finished: FinishedRequest) -> None:
        instruments = self._shared.instruments
        attributes = {"gen_ai.provider.name": PROVIDER, "gen_ai.operation.name": finished.operation, "gen_ai.request.model": finished.model_label}
        instruments.genai_request_duration.record(finished.duration_s, {**attributes, "error.type": finished.error_type} if finished.error_type else attributes)
        if finished.first_output == TOOL_CALL:  # the call came whole: the time to it is the whole generation's, told apart
            instruments.time_to_tool_call.record(finished.time_to_first_token_s, {"http.route": finished.route})
        elif finished.time_to_first_token_s is not None:
            instruments.time_to_first_token.record(finished.time_to_first_token_s, attributes)
            instruments.route_time_to_first_token.record(finished.time_to_first_token_s, {"http.route": finished.route})
        for kind, tokens, counter in (("input", finished.input_tokens, instruments.prompt_tokens), ("output", finished.output_tokens, instruments.generated_tokens)):
            if tokens is not None:
                counter.add(tokens, attributes)
                instruments.token_usage.record(tokens, {**attributes, "gen_ai.token.type": kind})
        if finished.time_per_output_token_s is not None:
            instruments.time_per_output_token.record(finished.time_per_output_token_s, attributes)
        self._record_cache(attributes, finished)
        # Ollama's phases are the model's, whichever API asked: per model only (docs/metrics.md, series budget).
        per_model = {"gen_ai.provider.name": PROVIDER, "gen_ai.request.model": finished.model_label}
        for histogram, seconds in (
            (instruments.load_duration, finished.load_duration_s),
            (instruments.prompt_eval_duration, finished.prompt_eval_s),
            (instruments.eval_duration, finished.eval_s),
            (instruments.queue_wait, finished.queue_wait_s),
        ):
            if seconds is not None:
                histogram.record(seconds, per_model)
        if not finished.cloud:  # ollama.com's time: no phases of Ollama's scheduler
            self._record_phases(per_model, finished)
        if finished.load_reason in LOAD_REASONS:
            changed = changed_options(finished.reload_cause)  # a reload's only: a cold load has no cause
            instruments.model_loads.add(1, {**per_model, "ollama.load.reason": finished.load_reason, **({"ollama.load.cause": changed} if changed else {})})
        if finished.context_fill is not None:
            instruments.context_fill.record(finished.context_fill, per_model)
            # 0 for a prompt that fitted: the series is there from the model's first request, so that rate() counts its first cut
            instruments.context_full.add(1 if finished.context_full else 0, per_model)

    def _record_cache(self, attributes: dict[str, Any], finished: FinishedRequest) -> None:
        """The prompt cache: tokens read from it and evaluated anew (where Ollama reported it), the prompt rate's
        parts, and a turn that read its conversation again."""
        instruments = self._shared.instruments
        cached, total = finished.prompt_cached_tokens, finished.input_tokens
        if cached is None or total is None:
            return
        instruments.prompt_cached_tokens.add(cached, attributes)
        instruments.prompt_new_tokens.add(total - cached, attributes)
        per_model = {"gen_ai.provider.name": PROVIDER, "gen_ai.request.model": finished.model_label}
        if finished.prompt_tokens_per_second is not None and finished.prompt_eval_s:
            instruments.prompt_eval_new_tokens.add(total - cached, per_model)
            instruments.prompt_eval_time.add(finished.prompt_eval_s, per_model)
        if finished.cache_miss is not None:
            lost = {**per_model, "ollama.cache.cause": finished.cache_miss}
            instruments.prompt_cache_misses.add(1, lost)
            instruments.prompt_cache_read_again.add(finished.read_again_tokens or 0, lost)

    def _record_phases(self, per_model: dict[str, Any], finished: FinishedRequest) -> None:
        """ollama.scheduler.time: each phase that took time; the pending wait by the model it waited behind."""
        counter = self._shared.instruments.scheduler_time
        label = finished.model_label
        if label not in self._shared.phases_started:  # each phase's series from 0, so that rate() counts its first wait
            self._shared.phases_started.add(label)
            for phase in PHASES:
                counter.add(0.0, {**per_model, "ollama.phase": phase})
        for phase, seconds in (("drain", finished.drain_s), ("load", finished.load_s), ("slot", finished.slot_wait_s), ("unknown", finished.unknown_s)):
            if seconds:
                counter.add(seconds, {**per_model, "ollama.phase": phase})
        # ollama.behind names another model whose load held this one up; waiting for its own model's load has none.
        own = finished.pending_wait_s or 0.0
        for behind, seconds in finished.waited_behind_s.items():
            if behind != self.model:
                counter.add(seconds, {**per_model, "ollama.phase": "pending", "ollama.behind": self._shared.models.label(behind, admit=False)})
                own -= seconds
        if own > 1e-9:
            counter.add(own, {**per_model, "ollama.phase": "pending"})
