"""A finished request: every number the proxy derives from one request, worked out once.

``/-/requests`` serves its fields (they are that endpoint's schema, docs/metrics.md), and the
spans (otel_proxy/spans.py) and the metric records (otel_proxy/observer.py) read it, so no
number is computed in two places. It never holds prompt or response text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from otel_proxy import ollama
from otel_proxy.labels import UNKNOWN_MODEL
from otel_proxy.continuations import Continuation
from otel_proxy.ollama import Report, RequestFacts
from otel_proxy.scheduling import Decomposition, context_fill, cut_to_fit
from otel_proxy.watch import TOOL_CALL

CONTEXT_FULL = 0.95  # a context filled at or above this share: the prompt was (very likely) truncated


@dataclass(frozen=True)
class Observed:
    """What the observer saw of a request on its way: the facts a finished request is derived from."""

    started: float  # perf_counter at arrival
    started_ns: int  # the same instant, epoch nanoseconds
    ended: float  # perf_counter when its last byte was sent (or it failed)
    trace_id: int
    trace_sampled: bool
    method: str
    route: str
    operation: str | None
    facts: RequestFacts
    status: int | None
    error_type: str | None
    error_message: str | None
    first_output_at: float | None  # the first chunk carrying output (perf_counter)
    streamed: bool  # Ollama's answer streamed (NDJSON or SSE), whatever the body said
    client: str | None
    session: str | None  # the agent's session id, hashed (otel_proxy/clients.py Caller)
    model: str | None  # the model's one name (ollama_otel_stack/model_names.py)
    model_label: str | None  # its metric label (bounded), None for a request that is no generation
    context_length: int | None
    added_s: float | None = None  # the proxy's own hold on the request and the answer's head (RequestObserver.added_s)

    @property
    def streamed_generation(self) -> bool:
        """A generation Ollama answered as a stream (an embedding is never one). Read from the answer, not the body,
        whose ``stream`` may lie past the part the proxy reads (an agent's 1.4 MB turn writes it last)."""
        return self.streamed and self.operation not in (None, ollama.EMBEDDINGS)


@dataclass(frozen=True)
class FinishedRequest:
    """One finished request, as ``/-/requests`` lists it; None wherever a number is not known."""

    start_time: str
    trace_id: str
    trace_sampled: bool
    method: str
    client: str | None
    session: str | None  # an agent's session id, hashed: its turns share it (docs/metrics.md)
    route: str
    operation: str | None
    model: str | None  # the model's one name, "other" past --max-models
    requested_model: str | None  # as the client wrote it
    response_model: str | None  # as Ollama ran it (a cloud model: as its answer names it)
    stream: bool
    status: int | None
    duration_s: float
    time_to_first_token_s: float | None  # to the first output, whatever it was
    first_output: str | None  # what it was: "text", "reasoning" or "tool_call" (a call comes whole, its generation before it)
    input_tokens: int | None  # the whole prompt, its cached tokens included, on every API
    output_tokens: int | None
    tokens_per_second: float | None
    prompt_cached_tokens: int | None  # of input_tokens, read from the runner's prompt cache (Ollama 0.33.3 and later)
    prompt_tokens_per_second: float | None  # the prompt rate on new tokens: (input - cached) / prompt_eval_s
    turn: int | None  # its place in its conversation, 1 for the first the proxy saw (otel_proxy/continuations.py)
    cache_miss: str | None  # why a turn that continued its conversation read its prompt again (continuations.CAUSES)
    read_again_tokens: int | None  # the tokens the last turn left in the cache that this one evaluated again
    history_changed_at: int | None  # cache_miss "history_changed": the first message that differs (1-based)
    load_duration_s: float | None  # Ollama's, whole: pending, drain and load (or unknown) are its parts
    queue_wait_s: float | None  # pending, drain and slot wait together
    pending_wait_s: float | None
    waited_behind: tuple[str, ...]
    waited_behind_s: dict[str, float] = field(hash=False)  # the pending wait, by the model whose load it waited behind
    drain_s: float | None
    load_s: float | None
    unknown_s: float | None
    load_reason: str | None
    reload_cause: str | None
    slot_wait_s: float | None
    prompt_eval_s: float | None
    eval_s: float | None
    ollama_total_s: float | None
    # The rest of Ollama's time (parsing, templating, tokenizing) and the proxy's own (network, relaying):
    # with the parts above they add up to duration_s.
    ollama_other_s: float | None
    proxy_s: float | None
    # The proxy's own time, measured: from the request's arrival until it was on its way to Ollama, and from
    # Ollama's answer head until the client's was sent (the Server-Timing header gives the same figure).
    proxy_added_s: float | None
    context_length: int | None
    context_fill: float | None
    # Its prompt has the length Ollama cuts one too long for the context to (llm/llama_server.go
    # completionPromptForRequest): Ollama's log says "truncating input prompt" for it. None where the context or the
    # prompt's length is not known.
    prompt_cut: bool | None
    error_type: str | None
    error: str | None
    finish_reason: str | None
    reasoning: bool
    tool_calls: bool
    cloud: bool

    @property
    def model_label(self) -> str:
        """The metric label of a generation's model (``unknown`` when its body named none)."""
        return self.model or UNKNOWN_MODEL

    @property
    def context_full(self) -> bool:
        """The prompt was (very likely) cut to the context: it filled 95 % of it, or it has the length Ollama cuts a
        prompt too long for the context to (docs/metrics.md)."""
        return (self.context_fill is not None and self.context_fill >= CONTEXT_FULL) or bool(self.prompt_cut)

    @property
    def time_per_output_token_s(self) -> float | None:
        """The same rate as ``tokens_per_second``, per token."""
        return 1 / self.tokens_per_second if self.tokens_per_second else None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def generation(report: Report, seen: Observed) -> tuple[int, float] | None:
    """The tokens of a generation and the seconds they took, the one base of every rate.

    Ollama's ``eval_count`` over its ``eval_duration`` where it timed them. Else, for an answer
    streamed a token a chunk, the tokens after the first over the time from the first output to
    the end (the first token's own time is in the time to first token). An answer that came in
    one piece has no such time, and neither has one that opened with a tool call: Ollama holds a call back until it
    is whole, so it was generated before its first byte, and the time after it is the closing events'.
    """
    if report.eval_s and report.output_tokens:
        return report.output_tokens, report.eval_s
    if not seen.streamed_generation or seen.first_output_at is None or report.output_tokens is None or report.output_tokens < 2:
        return None
    if report.first_output == TOOL_CALL:
        return None
    seconds = seen.ended - seen.first_output_at
    return (report.output_tokens - 1, seconds) if seconds > 0 else None


def rest(whole: float | None, *parts: float | None) -> float | None:
    """``whole`` less its known ``parts`` (never below 0), or None when the whole is not known."""
    if whole is None:
        return None
    return max(0.0, whole - sum(part or 0.0 for part in parts))


def prompt_rate(report: Report) -> float | None:
    """Tokens a second of the prompt's evaluation, the tokens read from the cache left out (as Ollama's own CLI counts
    since #17943); unknown where the cached count or the time is."""
    if report.input_tokens is None or report.cached_input_tokens is None or not report.prompt_eval_s:
        return None
    return (report.input_tokens - report.cached_input_tokens) / report.prompt_eval_s


def finish(seen: Observed, report: Report, parts: Decomposition, continuation: Continuation | None = None) -> FinishedRequest:
    duration = seen.ended - seen.started
    first_output = None if seen.first_output_at is None else seen.first_output_at - seen.started
    rate = generation(report, seen)
    cloud = ollama.is_cloud_model(seen.facts.model)
    behind: dict[str, float] = {}
    for model, seconds in parts.behind:
        behind[model] = behind.get(model, 0.0) + seconds
    return FinishedRequest(
        start_time=datetime.fromtimestamp(seen.started_ns / 1e9, tz=timezone.utc).isoformat(),
        trace_id=format(seen.trace_id, "032x"),
        trace_sampled=seen.trace_sampled,
        method=seen.method,
        client=seen.client,
        session=seen.session,
        route=seen.route,
        operation=seen.operation,
        model=seen.model if seen.model_label not in (None, "other") else seen.model_label,
        requested_model=seen.facts.model,
        response_model=report.response_model if cloud or not seen.model else seen.model,
        stream=seen.streamed if seen.status is not None else seen.facts.stream,
        status=seen.status,
        duration_s=duration,
        time_to_first_token_s=first_output if seen.streamed_generation and seen.status == 200 else None,
        first_output=report.first_output if seen.streamed_generation and seen.status == 200 else None,
        input_tokens=report.input_tokens,
        output_tokens=report.output_tokens,
        tokens_per_second=rate[0] / rate[1] if rate else None,
        prompt_cached_tokens=report.cached_input_tokens,
        prompt_tokens_per_second=prompt_rate(report),
        turn=continuation.turn if continuation else None,
        cache_miss=continuation.cause if continuation else None,
        read_again_tokens=continuation.read_again_tokens if continuation else None,
        history_changed_at=continuation.changed_at_message if continuation else None,
        load_duration_s=report.load_s,
        queue_wait_s=parts.waiting_s,
        pending_wait_s=parts.pending_s,
        waited_behind=tuple(model for model, _ in parts.behind),
        waited_behind_s=behind,
        drain_s=parts.drain_s,
        load_s=parts.load_s,
        unknown_s=parts.unknown_s,
        load_reason=parts.load_reason,
        reload_cause=parts.reload_cause,
        slot_wait_s=parts.slot_s,
        prompt_eval_s=report.prompt_eval_s,
        eval_s=report.eval_s,
        ollama_total_s=report.total_s,
        ollama_other_s=rest(report.total_s, parts.pending_s, parts.drain_s, parts.load_s, parts.unknown_s, parts.slot_s, report.prompt_eval_s, report.eval_s),
        proxy_s=rest(duration, report.total_s),
        proxy_added_s=seen.added_s,
        context_length=seen.context_length,
        context_fill=context_fill(report.input_tokens, report.output_tokens, seen.context_length),
        prompt_cut=cut_to_fit(report.input_tokens, seen.context_length) if report.input_tokens is not None and seen.context_length else None,
        error_type=seen.error_type,
        error=seen.error_message or report.error,
        finish_reason=report.finish_reason,
        reasoning=report.reasoning,
        tool_calls=report.tool_calls,
        cloud=cloud,
    )
