"""A stand-in for Ollama that speaks its wire formats exactly, as Ollama 0.32.15's Go source writes them.

- /api/generate and /api/chat (server/routes.go, api/types.go): NDJSON ending in the
  ``"done": true`` chunk with ``done_reason``, counts and nanosecond timings, every zero
  count or duration left out (``omitempty``); ``message.thinking`` (/api/chat) or ``thinking``
  (/api/generate, api.GenerateResponse) chunks when the request asks to ``think``, a
  ``message.tool_calls`` chunk when it offers ``tools``.
- /v1/chat/completions and /v1/completions (openai/openai.go, middleware/openai.go): SSE
  ``data:`` events, the role in the first chat delta only, ``delta.reasoning`` and
  ``delta.tool_calls``, the finish reason on its own chunk with an empty delta, with
  ``stream_options.include_usage`` a zeroed ``usage`` on every completions chunk and a
  final chunk with ``choices: []`` and the real usage, then ``data: [DONE]``.
- /v1/responses and /v1/messages: see tests/fake/formats.py.
- Cloud models (names ending ``-cloud`` or ``:cloud``), which Ollama forwards to ollama.com:
  token counts, no durations.
- Errors in each API's shape: ``{"error": "..."}`` on /api, OpenAI's ``{"error": {"message",
  "type", "param", "code"}}`` on /v1, Anthropic's ``{"type": "error", "error": {...}}``.

JSON is written the way Go writes it: compact, no spaces (``fake_formats.go_json``).

Run it: ``python -m tests.fake.ollama --port 11434 [--token-delay 0.01]``.

Beyond Ollama's API it serves ``/fake/stats`` (ground truth: what it reported, per
model), ``/fake/schedule`` (what its scheduler did to each request, tests/fake/scheduler.py)
and ``/fake/configure`` (answers for a model, delays), and it knows a few model
names that misbehave on purpose: ``fault-reset`` (connection dropped mid-stream),
``fault-stall`` (stops sending mid-stream), ``fault-malformed`` (a line that is not
JSON, then the end), ``fault-nobody`` (200 with an empty body).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import asyncio
import contextlib
import hashlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route



from tests.fake.scheduler import GIB, GO_ZERO_TIME, KV_BYTES_PER_TOKEN, SINGLE_SLOT_FAMILIES, Scheduler, ServerBusy, Ticket, Truth, runner_options
from tests.fake.prompts import DEFAULT_NUM_KEEP, TOOL_CALL_TOKENS, fit, render, tool_call_ids, word_ids
from tests.fake.server_log import BATCH, MLX_PREFILL_CHUNK, AccessLog, ServerLog, blob_path
from tests.fake.formats import MessagesStream, Piece, ResponsesStream, anthropic_error, estimate_input_tokens, go_json, messages_body, responses_body
from tests.fake import go_decode

CACHE_REPORTED_SINCE = (0, 33, 3)  # ollama/ollama PR #17943 (merged 2026-08-22), first released in 0.33.3
OLLAMA_VERSION = "0.32.15"  # the release whose Go source these formats were read from (and compose.yaml's image tag)
CLOUD_SUFFIXES = ("-cloud", ":cloud")


def go_time(value: datetime) -> str:
    """A time.Time as encoding/json writes it (RFC 3339, nanoseconds): the zero time as 0001-01-01T00:00:00Z."""
    return "0001-01-01T00:00:00Z" if value == GO_ZERO_TIME else value.isoformat()


THINKING = ["Let ", "me ", "think. "]  # a reasoning model's thinking before it answers
PROMPT_TOKEN_NS = 20_000  # prompt evaluation: 20 µs a token, as a small GPU does


def stored_name(name: str) -> str:
    """A model name as Ollama stores it (types/model/name.go ``ParseName``, then ``DisplayShortest``):
    the default host and namespace left out, the default tag written out."""
    rest = name
    for default in ("registry.ollama.ai/", "library/"):
        if rest.lower().startswith(default):
            rest = rest[len(default):]
    if ":" not in rest.rsplit("/", 1)[-1]:
        rest += ":latest"
    return rest


def answer_ids(pieces: list[Piece]) -> list[int]:
    """The tokens the model generated for ``pieces`` (tests/fake/prompts.py), as its runner's slot keeps them."""
    ids: list[int] = []
    for piece in pieces:
        ids += word_ids(piece.thinking) + word_ids(piece.content)
        if piece.tool_call is not None:
            ids += tool_call_ids(piece.tool_call["name"], piece.tool_call["arguments"])
    return ids


@dataclass
class Prefill:
    """The prompt as the runner read it: its tokens, those its cache held (None: no runner), the time of the rest,
    and the cached count this Ollama writes in its answer (None where its version writes none)."""

    tokens: int
    cached: int | None
    ns: int
    reported: int | None


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class FakeModel:
    name: str
    size: int
    size_vram: int
    family: str = "llama"
    parameter_size: str = "1.2B"
    answer: str | None = None  # fixed text instead of "tok0 tok1 ..."
    chunk_text: str | None = None  # every streamed token is this text (large responses for back-pressure tests)
    blob: str = ""  # the weights (schedulerModelKey); two names with one blob are one model (an `ollama cp` alias)
    train_ctx: int = 131072  # the training context: the ceiling of num_ctx
    mlx: bool = False  # served by x/mlxrunner: one request at a time
    embedding: bool = False  # no completion capability: loaded with one slot (server/sched.go Scheduler.load)
    kv_bytes_per_token: int = KV_BYTES_PER_TOKEN  # a token's KV state, as the RAM prompt cache counts it

    def __post_init__(self) -> None:
        self.blob = self.blob or self.name

    @property
    def digest(self) -> str:
        """The manifest's digest, as /api/tags lists it: the same for two names of one blob."""
        return hashlib.sha256(self.blob.encode()).hexdigest()


DEFAULT_MODELS = {
    "llama3.2:1b": FakeModel("llama3.2:1b", 1_321_098_329, 1_321_098_329),
    # `ollama pull llama3.2` and `llama3.2:3b`: one manifest, two names (what people type is "llama3.2")
    "llama3.2:latest": FakeModel("llama3.2:latest", 2_019_393_189, 2_019_393_189, parameter_size="3.2B", blob="llama3.2-3b"),
    "llama3.2:3b": FakeModel("llama3.2:3b", 2_019_393_189, 2_019_393_189, parameter_size="3.2B", blob="llama3.2-3b"),
    "qwen2.5:7b": FakeModel("qwen2.5:7b", 6_010_000_000, 4_500_000_000, family="qwen2", parameter_size="7.6B"),
    "qwen2.5:latest": FakeModel("qwen2.5:latest", 6_010_000_000, 4_500_000_000, family="qwen2", parameter_size="7.6B", blob="qwen2.5:7b"),
    "phi3:mini": FakeModel("phi3:mini", 2_400_000_000, 2_400_000_000, family="phi3", parameter_size="3.8B"),
    "nomic-embed-text:latest": FakeModel("nomic-embed-text:latest", 274_302_450, 274_302_450, family="nomic-bert", parameter_size="137M", embedding=True),
}
FAULT_MODELS = {"fault-reset", "fault-stall", "fault-malformed", "fault-nobody"}
# The handler each route reaches (server/routes.go GenerateRoutes): their error answers differ.
HANDLERS = {"/api/generate": "generate", "/v1/completions": "generate", "/api/chat": "chat", "/v1/chat/completions": "chat", "/v1/responses": "chat",
            "/v1/messages": "chat", "/api/embed": "embed", "/v1/embeddings": "embed", "/api/embeddings": "embeddings"}
# The struct each route's body is bound to (server/routes.go's handlers; middleware/openai.go and anthropic.go on /v1)
REQUEST_TYPES = {"/api/generate": "api.GenerateRequest", "/api/chat": "api.ChatRequest", "/api/embed": "api.EmbedRequest",
                 "/api/embeddings": "api.EmbeddingRequest", "/v1/completions": "openai.CompletionRequest",
                 "/v1/chat/completions": "openai.ChatCompletionRequest", "/v1/responses": "openai.ResponsesRequest",
                 "/v1/messages": "anthropic.MessagesRequest", "/v1/embeddings": "openai.EmbedRequest"}


class ScheduledStream(StreamingResponse):
    """A stream whose head is written with its first chunk, as Go's http.ResponseWriter writes it: Ollama schedules
    the request (a load, the pending queue) before it writes anything, so a scheduling error (ErrMaxQueue) is an
    answer of its own, with its status (server/routes.go handleScheduleError), not a 200 cut short."""

    async def stream_response(self, send: Any) -> None:
        chunks = aiter(self.body_iterator)
        first = await anext(chunks, None)  # a ServerBusy here reaches the app's exception handler, nothing written yet
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if first is not None:
            await send({"type": "http.response.body", "body": first if isinstance(first, bytes) else first.encode(), "more_body": True})
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk if isinstance(chunk, bytes) else chunk.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@dataclass
class Stats:
    """What the fake reported, to compare the proxy's numbers against."""

    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    prompt_tokens: int = 0
    prompt_cached_tokens: int = 0  # of prompt_tokens, read from a runner's cache (whether or not the version reports it)
    generated_tokens: int = 0
    eval_seconds: float = 0.0
    by_model: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    digests: dict[str, str] = field(default_factory=dict)
    blob_bytes: int = 0
    disconnects: int = 0
    by_route: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "prompt_tokens": self.prompt_tokens,
            "prompt_cached_tokens": self.prompt_cached_tokens,
            "generated_tokens": self.generated_tokens,
            "eval_seconds": self.eval_seconds,
            "by_model": {name: dict(values) for name, values in self.by_model.items()},
            "digests": self.digests,
            "blob_bytes": self.blob_bytes,
            "disconnects": self.disconnects,
            "by_route": {route: dict(values) for route, values in self.by_route.items()},
        }


class FakeOllama:
    def __init__(self, token_delay: float, load_delay: float, version: str = OLLAMA_VERSION, log: Path | None = None) -> None:
        self.token_delay = token_delay
        self.load_delay = load_delay
        self.version = version
        self.answer_delay = 0.0  # extra wait before the first byte (timeouts of callers)
        self.answer_tokens = 8  # the length of an answer that ends by itself (no token limit)
        self.first_delta_delay = 0.0  # /v1/responses and /v1/messages: the opening events, then this wait, then the first token
        self.tool_preamble_tokens = 0  # text tokens an answer that calls a tool writes before the call
        self.models = {name: FakeModel(**vars(model)) for name, model in DEFAULT_MODELS.items()}
        self.scheduler = Scheduler(load_delay)
        self.scheduler.server_log = ServerLog(log) if log else None
        if self.scheduler.server_log is not None:
            self.scheduler.server_log.server_config(self.scheduler.parallel)
        self.stats = Stats()
        self.failures: dict[str, tuple[int, str]] = {}  # model -> (status, message) its requests are answered with
        self.served: dict[str, float] = {}  # request id -> seconds from arrival to the last byte (TimedRequests)
        self.prompt_token_ns = PROMPT_TOKEN_NS  # the runner's time to read a prompt token
        self.native_metrics = False  # Ollama has no /metrics today; an open pull request adds one (shared/ollama-facts.md)

    # Helpers ----------------------------------------------------------------------------

    def find(self, name: str) -> FakeModel | None:
        """The stored model a request names, matched without regard to case (server/images.go ``getExistingName``)."""
        wanted = stored_name(name).lower()
        return next((model for stored, model in self.models.items() if stored.lower() == wanted), None)

    def _slot(self, model: str, body: dict[str, Any], request: Request, started: float | None = None):  # -> an async context manager yielding a Ticket
        """A runner for the request (tests/fake/scheduler.py), held while it generates; ``started``: the handler's start.

        A cloud model has none: Ollama hands it to ollama.com before its scheduler (server/routes.go GenerateHandler
        and ChatHandler, the modelSourceCloud branch returns before scheduleRunner; server/cloud_proxy.go
        cloudPassthroughMiddleware on /v1): no load, no pending queue, no slot, nothing in /api/ps."""
        if model.endswith(CLOUD_SUFFIXES):
            return _cloud()
        options = body.get("options") if isinstance(body.get("options"), dict) else None
        # The request's id in the truth log: the caller's own, else the trace id of its traceparent (what the proxy's /-/requests lists).
        traceparent = request.headers.get("traceparent", "").split("-")
        request_id = request.headers.get("x-fake-request-id") or (traceparent[1] if len(traceparent) == 4 else "")
        stored = self.find(model)
        place = {"key": stored.blob, "name": stored.name, "train_ctx": stored.train_ctx, "mlx": stored.mlx,
                 "one_slot": stored.embedding or stored.family in SINGLE_SLOT_FAMILIES, "kv_bytes_per_token": stored.kv_bytes_per_token} if stored else {}
        return self.scheduler.slot(model, options, body.get("keep_alive"), request_id, started=started, **place)

    def num_ctx(self, model: str, options: dict[str, Any] | None) -> int:
        stored = self.find(model)
        return runner_options(options, self.scheduler.default_ctx(), stored.train_ctx if stored else 131072)["num_ctx"]

    def _tokens(self, model: str, count: int) -> list[str]:
        fixed = self.find(model)
        if fixed is not None and fixed.answer is not None:
            return [fixed.answer]
        if fixed is not None and fixed.chunk_text is not None:
            return [fixed.chunk_text] * count
        return [f"tok{i} " for i in range(count)]

    def _record(self, endpoint: str, model: str, prompt_tokens: int, eval_count: int, eval_seconds: float, cached: int | None = None) -> None:
        self.stats.requests[endpoint] += 1
        self.stats.prompt_tokens += prompt_tokens
        self.stats.prompt_cached_tokens += cached or 0
        self.stats.generated_tokens += eval_count
        self.stats.eval_seconds += eval_seconds
        per_model = self.stats.by_model[model]
        per_model["requests"] += 1
        per_model["prompt_tokens"] += prompt_tokens
        per_model["prompt_cached_tokens"] += cached or 0
        per_model["generated_tokens"] += eval_count
        per_model["eval_seconds"] += eval_seconds
        per_route = self.stats.by_route[endpoint]
        per_route["requests"] += 1
        per_route["prompt_tokens"] += prompt_tokens
        per_route["prompt_cached_tokens"] += cached or 0
        per_route["generated_tokens"] += eval_count

    @property
    def reports_cache(self) -> bool:
        """Whether this Ollama writes the cached-token fields (PR #17943, first released in 0.33.3)."""
        numbers = tuple(int(part) for part in self.version.split("-")[0].split(".")[:3] if part.isdigit())
        return numbers >= CACHE_REPORTED_SINCE

    async def _prefill(self, ticket: Ticket, route: str, body: dict[str, Any], model: str) -> Prefill:
        """The runner reads the prompt: rendered and cut as Ollama does (tests/fake/prompts.py), taken into a slot of
        the runner's cache (tests/fake/prompt_cache.py), and evaluated, the tokens not in the cache only."""
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        keep = options.get("num_keep")
        tokens, cut = fit(render(route, body), self.num_ctx(model, options), keep if isinstance(keep, int) else DEFAULT_NUM_KEEP)
        cached = ticket.prompt(tokens)
        ticket.truth.truncated = cut is not None
        log = self.scheduler.server_log if ticket.slot is not None else None
        if log is not None and cut is not None:
            log.truncated(cut.limit, cut.prompt, cut.keep, cut.new)
        started = time.perf_counter()
        if log is not None and ticket.mlx:  # x/mlxrunner/pipeline.go: a line a chunk of 2,048 of the tokens not cached, the last one left to decode
            total, processed = len(tokens) - (cached or 0), 0
            while total - processed > 1:
                chunk = min(MLX_PREFILL_CHUNK, total - processed - 1)
                await asyncio.sleep(chunk * self.prompt_token_ns / 1e9)
                processed += chunk
                log.mlx_progress(processed, total)
            await asyncio.sleep((total - processed) * self.prompt_token_ns / 1e9)
        elif log is None:
            await asyncio.sleep((len(tokens) - (cached or 0)) * self.prompt_token_ns / 1e9)
        else:  # llama-server's lines as it reads the prompt a batch at a time (tools/server/server-context.cpp)
            slot, task = ticket.slot, log.task(ticket.slot, self.num_ctx(model, options), len(tokens))
            for in_slot in range(cached or 0, len(tokens), BATCH):
                log.batch(slot, task, in_slot)
                await asyncio.sleep((min(in_slot + BATCH, len(tokens)) - in_slot) * self.prompt_token_ns / 1e9)
            ticket.on_release = lambda in_slot: log.released(slot, task, in_slot)
        prompt_ns = int((time.perf_counter() - started) * 1e9)  # measured, as llama-server's prompt_ms is
        if log is not None and not ticket.mlx:
            log.prompt_done(ticket.slot, task, prompt_ns / 1e9, len(tokens) - (cached or 0))
        ticket.truth.prompt_s = prompt_ns / 1e9
        return Prefill(len(tokens), cached, prompt_ns, cached if self.reports_cache else None)

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        """The request's JSON body, or the error Ollama answers for it, text for text (server/routes.go's handlers,
        middleware/openai.go and middleware/anthropic.go before them on /v1), in the shape of the API called."""
        route = request.url.path
        handler = HANDLERS[route]
        raw = await request.body()
        try:
            body = go_decode.decode(raw)  # gin's ShouldBindJSON: Go's json.Decoder, its first value, its words
        except go_decode.NoValue:  # io.EOF: the handlers' own words; the /v1 middleware passes the decoder's
            return self._error(route, 400, "EOF" if route.startswith("/v1/") else "missing request body")
        except go_decode.GoSyntaxError as error:
            return self._error(route, 400, str(error))
        request_type = REQUEST_TYPES[route]
        if body is None:  # null: a zero request, as if empty of fields
            body = {}
        if not isinstance(body, dict):  # encoding/json UnmarshalTypeError at the top
            return self._error(route, 400, f"json: cannot unmarshal {go_decode.kind(body)} into Go value of type {request_type}")
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            struct = request_type.split(".")[1]
            return self._error(route, 400, f"json: cannot unmarshal {go_decode.kind(model)} into Go struct field {struct}.model of type string")
        if route == "/v1/messages":  # middleware/anthropic.go AnthropicMessagesMiddleware, before the chat handler
            if not model:
                return self._error(route, 400, "model is required")
            if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] <= 0:
                return self._error(route, 400, "max_tokens is required and must be positive")
            if not body.get("messages"):
                return self._error(route, 400, "messages is required")
        if route == "/v1/chat/completions" and not body.get("messages"):
            return self._error(route, 400, "[] is too short - 'messages'")  # middleware/openai.go ChatMiddleware
        if not model:  # parseAndValidateModelRef fails: writeModelRefParseError's fallback, which differs by handler
            return self._error(route, 404, "model '' not found") if handler in ("generate", "embed") else self._error(route, 400, "model is required")
        if self.find(model) is None and model not in FAULT_MODELS and not model.endswith(CLOUD_SUFFIXES):
            return self._error(route, 404, f"model '{model}' not found")  # getExistingName / getModel failed
        failing = self.failures.get(model)
        if failing is not None:  # handleScheduleError's default: the runner could not be started (a 500), or what was configured
            return self._error(route, failing[0], failing[1])
        return body

    @staticmethod
    def _error(route: str, status: int, message: str) -> Response:
        """An error answer in the shape of the API called: gin.H{"error"} on /api, openai.NewError on /v1 (the
        middleware's writeError wraps a handler's), anthropic.NewError on /v1/messages."""
        if route == "/v1/messages":
            return Response(anthropic_error(status, message) + b"\n", status_code=status, media_type="application/json")
        if route.startswith("/v1/"):
            kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
            payload: dict[str, Any] = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        else:
            payload = {"error": message}
        return Response(go_json(payload), status_code=status, media_type="application/json; charset=utf-8")

    def _busy(self, route: str) -> Response:
        """server/sched.go ErrMaxQueue past OLLAMA_MAX_QUEUE, as server/routes.go handleScheduleError writes it: 503."""
        return self._error(route, 503, str(ServerBusy()))

    def _digest(self, request: Request, chunks: list[bytes]) -> None:
        request_id = request.headers.get("x-fake-request-id")
        if request_id:
            self.stats.digests[request_id] = hashlib.sha256(b"".join(chunks)).hexdigest()

    # /api ---------------------------------------------------------------------------------

    async def generate(self, request: Request) -> Response:
        return await self._native(request, chat=False)

    async def chat(self, request: Request) -> Response:
        return await self._native(request, chat=True)

    async def _native(self, request: Request, chat: bool) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        model = body["model"]
        if model in FAULT_MODELS:
            return self._fault(model)
        options = body.get("options") or {}
        limit = options.get("num_predict")
        count = int(limit) if isinstance(limit, int) and limit > 0 else 8
        done_reason = "length" if limit else "stop"
        endpoint = request.url.path

        def head(text: str, piece: Piece | None = None) -> dict[str, Any]:
            message: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
            if chat:  # api.Message: role, content, then thinking and tool_calls (omitempty)
                message["message"] = {"role": "assistant", "content": text}
                if piece is not None and piece.thinking:
                    message["message"]["thinking"] = piece.thinking
                if piece is not None and piece.tool_call is not None:
                    call = piece.tool_call
                    message["message"]["tool_calls"] = [{"id": call["id"], "function": {"index": 0, "name": call["name"], "arguments": call["arguments"]}}]
            else:  # api.GenerateResponse: response, then thinking (omitempty)
                message["response"] = text
                if piece is not None and piece.thinking:
                    message["thinking"] = piece.thinking
            return message

        def final(text: str, started: float, load_ns: int, read: Prefill, eval_ns: int, tokens: int, whole: Piece | None = None) -> dict[str, Any]:
            """The done chunk, fields in the order Go's structs declare them."""
            end = head(text, whole)
            if chat:  # api/types.go ChatResponse: Done, then DoneReason
                end.update(done=True, done_reason=done_reason)
            else:
                end.update(done=True, done_reason=done_reason, context=list(range(1, read.tokens + tokens + 1)))
            end.update(total_duration=int((time.perf_counter() - started) * 1e9), load_duration=load_ns, prompt_eval_count=read.tokens)
            if read.reported is not None:  # api.Metrics PromptEvalCachedCount *int, omitempty (#17943)
                end["prompt_eval_cached_count"] = read.reported
            end.update(prompt_eval_duration=read.ns, eval_count=tokens, eval_duration=eval_ns)
            if model.endswith(CLOUD_SUFFIXES):  # ollama.com's answer, relayed: counts, and no durations at all
                for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
                    del end[name]
            return end

        pieces = self._answer(model, count)
        if body.get("think") or (chat and body.get("tools")):  # GenerateRequest.Think; ChatRequest.Think, Tools
            pieces, done_reason = self._pieces(model, body, limit, think=bool(body.get("think")))
        eval_count = self._eval_count(pieces)
        if body.get("stream", True) is False:
            started = time.perf_counter()
            await asyncio.sleep(self.answer_delay)
            async with self._slot(model, body, request, started) as ticket:
                read = await self._prefill(ticket, endpoint, body, model)
                eval_started = time.perf_counter()
                await asyncio.sleep(self._generation_s(pieces))
                ticket.generated(answer_ids(pieces))
                eval_ns = int((time.perf_counter() - eval_started) * 1e9)
                ticket.ran(read.ns / 1e9, eval_ns / 1e9)
            self._record(endpoint, model, read.tokens, eval_count, eval_ns / 1e9, read.cached)
            whole = Piece(thinking="".join(p.thinking for p in pieces), tool_call=next((p.tool_call for p in pieces if p.tool_call), None))
            answer = final("".join(p.content for p in pieces), started, ticket.load_ns, read, eval_ns, eval_count, whole)
            return Response(go_json(answer), media_type="application/json; charset=utf-8")

        async def stream():
            sent: list[bytes] = []
            started = time.perf_counter()
            try:
                await asyncio.sleep(self.answer_delay)
                async with self._slot(model, body, request, started) as ticket:
                    read = await self._prefill(ticket, endpoint, body, model)
                    eval_started = time.perf_counter()
                    for piece in pieces:
                        await asyncio.sleep(self._generation_s([piece]))
                        ticket.generated(answer_ids([piece]))
                        line = go_json({**head(piece.content, piece), "done": False}) + b"\n"
                        sent.append(line)
                        yield line
                    eval_ns = int((time.perf_counter() - eval_started) * 1e9)
                    ticket.ran(read.ns / 1e9, eval_ns / 1e9)
                    # total_duration is taken just before the final chunk, while the request still holds its runner
                    line = go_json(final("", started, ticket.load_ns, read, eval_ns, eval_count)) + b"\n"
                sent.append(line)
                self._record(endpoint, model, read.tokens, eval_count, eval_ns / 1e9, read.cached)
                self._digest(request, sent)
                yield line
            except asyncio.CancelledError:
                self.stats.disconnects += 1
                raise

        return ScheduledStream(stream(), media_type="application/x-ndjson")

    def _fault(self, model: str) -> Response:
        if model == "fault-nobody":
            return Response(b"", media_type="application/x-ndjson")

        async def stream():
            for index in range(2):
                await asyncio.sleep(self.token_delay)
                yield go_json({"model": model, "created_at": now_rfc3339(), "response": f"tok{index} ", "done": False}) + b"\n"
            if model == "fault-reset":
                raise ConnectionResetError("fake Ollama dropped the connection mid-stream")
            if model == "fault-stall":
                await asyncio.sleep(3600)
            if model == "fault-malformed":
                yield b'{"model":"fault-malformed","response":\n'

        return ScheduledStream(stream(), media_type="application/x-ndjson")

    async def embed(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        started = time.perf_counter()
        async with self._slot(body["model"], body, request, started) as ticket:
            load_ns = ticket.load_ns
        inputs = body.get("input", "")
        texts = inputs if isinstance(inputs, list) else [inputs]
        prompt_tokens = sum(max(1, len(str(text).split())) for text in texts)
        self._record(request.url.path, body["model"], prompt_tokens, 0, 0.0)
        answer = {
            "model": body["model"],
            "embeddings": [[0.01 * (i + 1)] * 8 for i in range(len(texts))],
            "total_duration": int((time.perf_counter() - started) * 1e9),
            "load_duration": load_ns,
            "prompt_eval_count": prompt_tokens,
        }
        return Response(go_json(answer), media_type="application/json; charset=utf-8")

    async def embeddings_legacy(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        async with self._slot(body["model"], body, request):
            pass
        self.stats.requests[request.url.path] += 1
        return Response(go_json({"embedding": [0.5] * 8}), media_type="application/json; charset=utf-8")

    @staticmethod
    def _details(model: FakeModel) -> dict[str, Any]:
        """api/types.go ModelDetails."""
        return {
            "parent_model": "",
            "format": "safetensors" if model.mlx else "gguf",
            "family": model.family,
            "families": [model.family],
            "parameter_size": model.parameter_size,
            "quantization_level": "Q4_K_M",
        }

    async def ps(self, request: Request) -> Response:
        self.stats.requests[request.url.path] += 1
        running = []
        # server/routes.go PsHandler: DisplayShortest of the name that loaded the runner, longest to live first.
        for runner in sorted(self.scheduler.resident(), key=lambda runner: -runner.expires_at.timestamp()):
            name, model = runner.name, self.find(runner.name)
            if model is None:
                continue
            running.append(
                {
                    "name": name,
                    "model": name,
                    "size": model.size,
                    "digest": model.digest,
                    "details": self._details(model),
                    "expires_at": go_time(runner.expires_at),
                    "size_vram": model.size_vram,
                    "context_length": runner.options["num_ctx"],
                }
            )
        return Response(go_json({"models": running}), media_type="application/json; charset=utf-8")

    async def tags(self, request: Request) -> Response:
        self.stats.requests[request.url.path] += 1
        models = [
            # api/types.go ListModelResponse; server/routes.go ListHandler fills Details from the manifest's config
            {"name": m.name, "model": m.name, "modified_at": now_rfc3339(), "size": m.size, "digest": m.digest, "details": self._details(m)}
            for m in self.models.values()
        ]
        return Response(go_json({"models": models}), media_type="application/json; charset=utf-8")

    async def show(self, request: Request) -> Response:
        """server/routes.go ``ShowHandler``: the model's modelfile, whose FROM line is its blob's path (the path the
        server log's ``starting llama-server`` names), its details and capabilities; 404 for a model not stored."""
        self.stats.requests[request.url.path] += 1
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "missing request body"}, status_code=400)
        name = str(body.get("model") or body.get("name") or "") if isinstance(body, dict) else ""
        stored = self.find(name)
        if stored is None:
            return JSONResponse({"error": f"model '{name}' not found"}, status_code=404)
        modelfile = (f'# Modelfile generated by "ollama show"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM {stored.name}\n\n'
                     f"FROM {blob_path(stored.blob)}\nTEMPLATE {{{{ .Prompt }}}}\n")
        shown = {"modelfile": modelfile, "parameters": "", "template": "{{ .Prompt }}", "details": self._details(stored), "model_info": {},
                 "capabilities": ["embedding"] if stored.embedding else ["completion"], "modified_at": now_rfc3339()}
        return Response(go_json(shown), media_type="application/json; charset=utf-8")

    async def version_info(self, request: Request) -> Response:
        return Response(go_json({"version": self.version}), media_type="application/json; charset=utf-8")

    async def root(self, request: Request) -> Response:
        return Response("Ollama is running", media_type="text/plain; charset=utf-8")

    async def pull(self, request: Request) -> Response:
        async def stream():
            for status in ("pulling manifest", "verifying sha256 digest", "writing manifest", "success"):
                await asyncio.sleep(self.token_delay)
                yield go_json({"status": status}) + b"\n"

        return ScheduledStream(stream(), media_type="application/x-ndjson")

    async def blob(self, request: Request) -> Response:
        digest = request.path_params["digest"]
        if request.method == "HEAD":
            return Response(status_code=404)
        hasher = hashlib.sha256()
        async for part in request.stream():
            hasher.update(part)
            self.stats.blob_bytes += len(part)
        if f"sha256:{hasher.hexdigest()}" != digest:
            return self._error("/api/blobs", 400, "digest mismatch, expected " + digest)
        return Response(status_code=201)

    # /v1 ----------------------------------------------------------------------------------

    async def openai_chat(self, request: Request) -> Response:
        return await self._openai(request, chat=True)

    async def openai_completions(self, request: Request) -> Response:
        return await self._openai(request, chat=False)

    async def _openai(self, request: Request, chat: bool) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        model = body["model"]
        limit = body.get("max_tokens")
        count = int(limit) if isinstance(limit, int) and limit > 0 else 8
        pieces = self._answer(model, count)
        finish = "length" if limit else "stop"
        think = bool(body.get("reasoning_effort") or (body.get("reasoning") or {}).get("effort"))  # thinkFromReasoningEffort
        if chat and (think or body.get("tools")):
            pieces, finish = self._pieces(model, body, limit, think)
        if any(piece.tool_call for piece in pieces) and finish == "stop":
            finish = "tool_calls"  # FinishChunk and ToChatCompletion: stop after a tool call
        eval_count = self._eval_count(pieces)
        ident = ("chatcmpl-" if chat else "cmpl-") + str(int(time.time() * 1000) % 1000)
        kind = "chat.completion.chunk" if chat else "text_completion"
        route = request.url.path

        def usage(read: Prefill) -> dict[str, Any]:
            """openai.Usage; #17943 adds prompt_tokens_details.cached_tokens where the count is known."""
            counts: dict[str, Any] = {"prompt_tokens": read.tokens, "completion_tokens": eval_count, "total_tokens": read.tokens + eval_count}
            if read.reported is not None:
                counts["prompt_tokens_details"] = {"cached_tokens": read.reported}
            return counts

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        zero_usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

        def message(piece: Piece, role: bool) -> dict[str, Any]:
            """openai.Delta / openai.Message: role (first chunk only), content (kept even when ""), reasoning, tool_calls."""
            fields: dict[str, Any] = {"role": "assistant"} if role else {}
            fields["content"] = piece.content
            if piece.thinking:
                fields["reasoning"] = piece.thinking
            if piece.tool_call is not None:
                call = piece.tool_call
                fields["tool_calls"] = [{"id": call["id"], "index": 0, "type": "function",
                                         "function": {"name": call["name"], "arguments": go_json(call["arguments"]).decode()}}]
            return fields

        def choice(piece: Piece | None, reason: str | None, first: bool = False) -> dict[str, Any]:
            if chat:  # the finish reason comes on its own chunk, with an empty delta
                return {"index": 0, "delta": {} if piece is None else message(piece, first), "finish_reason": reason}
            return {"text": piece.content if piece else "", "index": 0, "finish_reason": reason}

        def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
            # ChatCompletionChunk: id, object, created, model, system_fingerprint, choices, usage;
            # CompletionChunk: id, object, created, choices, model, system_fingerprint, usage.
            payload: dict[str, Any] = {"id": ident, "object": kind, "created": int(time.time())}
            if chat:
                payload.update(model=model, system_fingerprint="fp_ollama", choices=choices)
            else:
                payload.update(choices=choices, model=model, system_fingerprint="fp_ollama")
                if include_usage and usage is None:
                    usage = zero_usage  # CompleteWriter: &openai.Usage{} on every chunk
            if usage is not None:
                payload["usage"] = usage
            return b"data: " + go_json(payload) + b"\n\n"

        if not body.get("stream", False):
            async with self._slot(model, body, request) as ticket:
                read = await self._prefill(ticket, route, body, model)
                eval_started = time.perf_counter()
                await asyncio.sleep(self._generation_s(pieces))
                ticket.generated(answer_ids(pieces))
                eval_seconds = time.perf_counter() - eval_started
                ticket.ran(read.ns / 1e9, eval_seconds)  # the /v1 middleware runs the native handler: the same truth
            whole = Piece(content="".join(p.content for p in pieces), thinking="".join(p.thinking for p in pieces),
                          tool_call=next((p.tool_call for p in pieces if p.tool_call), None))
            first = {"index": 0, "message": message(whole, True), "finish_reason": finish} if chat else {"text": whole.content, "index": 0, "finish_reason": finish}
            self._record(route, model, read.tokens, eval_count, eval_seconds, read.cached)
            payload = {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()), "model": model, "system_fingerprint": "fp_ollama", "choices": [first], "usage": usage(read)}
            return Response(go_json(payload), media_type="application/json")

        async def stream():
            sent: list[bytes] = []
            async with self._slot(model, body, request) as ticket:
                read = await self._prefill(ticket, route, body, model)
                eval_started = time.perf_counter()
                for index, piece in enumerate(pieces):
                    await asyncio.sleep(self._generation_s([piece]))
                    ticket.generated(answer_ids([piece]))
                    line = event([choice(piece, None, first=index == 0)])
                    sent.append(line)
                    yield line
            eval_seconds = time.perf_counter() - eval_started
            ticket.ran(read.ns / 1e9, eval_seconds)
            tail = [event([choice(None, finish)])]
            if include_usage:
                tail.append(event([], usage(read)))  # choices: [], the real usage
            tail.append(b"data: [DONE]\n\n")
            self._record(route, model, read.tokens, eval_count, eval_seconds, read.cached)
            sent.extend(tail)
            self._digest(request, sent)
            for line in tail:
                yield line

        return ScheduledStream(stream(), media_type="text/event-stream")

    # /v1/responses and /v1/messages: Ollama's chat run, converted (tests/fake/formats.py) ------

    def _pieces(self, model: str, body: dict[str, Any], limit: int | None, think: bool) -> tuple[list[Piece], str]:
        """The model run as Ollama's chat handler hands it to the converters, and its done reason."""
        pieces = [Piece(thinking=text) for text in THINKING] if think else []
        tools = body.get("tools")
        if tools and isinstance(tools, list) and isinstance(tools[0], dict):
            name = tools[0].get("name") or (tools[0].get("function") or {}).get("name") or "tool"
            if self.tool_preamble_tokens:  # text before the call ("Let me check the weather."), where configured
                pieces += self._answer(model, self.tool_preamble_tokens)
            pieces.append(Piece(tool_call={"id": f"call_{len(pieces)}", "name": name, "arguments": {"city": "Paris"}}))
            return pieces, "stop"
        count = limit if isinstance(limit, int) and limit > 0 else self.answer_tokens
        return pieces + self._answer(model, count), "length" if limit else "stop"

    def _answer(self, model: str, count: int) -> list[Piece]:
        """The answer's chunks; a character outside the BMP costs two tokens and comes whole in one chunk."""
        return [Piece(content=text, tokens=1 + sum(ord(char) > 0xFFFF for char in text)) for text in self._tokens(model, count)]

    @staticmethod
    def _eval_count(pieces: list[Piece]) -> int:
        return sum(TOOL_CALL_TOKENS if piece.tool_call else piece.tokens for piece in pieces)

    def _generation_s(self, pieces: list[Piece]) -> float:
        """How long the model takes to generate ``pieces``: a token time a token, a tool call's tokens too. Ollama's
        parser holds a call back until it is whole (tools/tools.go Parser.Add, the model/parsers' tool states), so its
        tokens are all generated before it is sent, in one chunk."""
        return self.token_delay * self._eval_count(pieces)

    async def _converted(self, request: Request, route: str) -> Response:
        anthropic = route == "/v1/messages"
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        model = body["model"]
        if anthropic:
            think = (body.get("thinking") or {}).get("type") == "enabled"
            wanted = body.get("max_tokens")  # required by the API: a limit only where it cuts the fake's answer short
            pieces, done_reason = self._pieces(model, body, wanted if isinstance(wanted, int) and wanted < self.answer_tokens else None, think)
        else:
            think = bool((body.get("reasoning") or {}).get("effort"))
            pieces, done_reason = self._pieces(model, body, body.get("max_output_tokens"), think)
        eval_count = self._eval_count(pieces)
        ident = f"{int(time.time() * 1000) % 10**9}"
        if not body.get("stream", False):
            async with self._slot(model, body, request) as ticket:
                await asyncio.sleep(self.answer_delay)
                read = await self._prefill(ticket, route, body, model)
                eval_started = time.perf_counter()
                await asyncio.sleep(self._generation_s(pieces))
                ticket.generated(answer_ids(pieces))
                eval_seconds = time.perf_counter() - eval_started
                ticket.ran(read.ns / 1e9, eval_seconds)  # the /v1 middleware runs the native handler: the same truth
            self._record(route, model, read.tokens, eval_count, eval_seconds, read.cached)
            whole = Piece(content="".join(p.content for p in pieces), thinking="".join(p.thinking for p in pieces),
                          tool_call=next((p.tool_call for p in pieces if p.tool_call), None),
                          done_reason=done_reason, prompt_eval_count=read.tokens, eval_count=eval_count, prompt_eval_cached_count=read.reported)
            answer = messages_body(f"msg_{ident}", model, whole) if anthropic else responses_body(f"resp_{ident}", model, body, whole)
            return Response(answer, media_type="application/json")
        converter: MessagesStream | ResponsesStream
        converter = MessagesStream(f"msg_{ident}", model, estimate_input_tokens(body)) if anthropic else ResponsesStream(f"resp_{ident}", model, body)

        async def stream():
            async with self._slot(model, body, request) as ticket:
                # Go writes and flushes each event on its own: the opening events reach the client
                # before the first token's, a first_delta_delay apart here (the TTFT tests widen it).
                for event in converter.opening():
                    yield event
                read = await self._prefill(ticket, route, body, model)
                await asyncio.sleep(self.first_delta_delay)
                eval_started = time.perf_counter()
                for piece in pieces:
                    await asyncio.sleep(self._generation_s([piece]))
                    ticket.generated(answer_ids([piece]))
                    for event in converter.process(piece):
                        yield event
                eval_seconds = time.perf_counter() - eval_started
                ticket.ran(read.ns / 1e9, eval_seconds)
            self._record(route, model, read.tokens, eval_count, eval_seconds, read.cached)
            done = Piece(done=True, done_reason=done_reason, prompt_eval_count=read.tokens, eval_count=eval_count, prompt_eval_cached_count=read.reported)
            for event in converter.process(done):
                yield event

        return ScheduledStream(stream(), media_type="text/event-stream")

    async def responses(self, request: Request) -> Response:
        return await self._converted(request, "/v1/responses")

    async def messages(self, request: Request) -> Response:
        return await self._converted(request, "/v1/messages")

    async def openai_embeddings(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        async with self._slot(body["model"], body, request):
            pass
        inputs = body.get("input", "")
        texts = inputs if isinstance(inputs, list) else [inputs]
        prompt_tokens = sum(max(1, len(str(text).split())) for text in texts)
        self._record(request.url.path, body["model"], prompt_tokens, 0, 0.0)
        payload = {
            "object": "list",
            "data": [{"object": "embedding", "embedding": [0.25] * 8, "index": i} for i in range(len(texts))],
            "model": body["model"],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
        return Response(go_json(payload), media_type="application/json")

    async def openai_models(self, request: Request) -> Response:
        data = [{"id": m.name, "object": "model", "created": 0, "owned_by": "library"} for m in self.models.values()]
        return Response(go_json({"object": "list", "data": data}), media_type="application/json")

    async def metrics(self, request: Request) -> Response:
        """A stand-in for the /metrics of Ollama's open pull request #18508 (OLLAMA_METRICS), once configured
        with ``native_metrics``: the names this project publishes too, with a ``model`` label of their own.
        Ollama today answers 404 here, as the fake does by default."""
        if not self.native_metrics:
            return await self.not_found(request)
        lines = []
        for family, key in (("ollama_prompt_tokens_total", "prompt_tokens"), ("ollama_generated_tokens_total", "generated_tokens")):
            lines.append(f"# TYPE {family} counter")
            lines += [f'{family}{{model="{model}"}} {int(values[key])}' for model, values in sorted(self.stats.by_model.items())]
        resident = self.scheduler.resident()
        for family, size in (("ollama_loaded_model_size_bytes", "size"), ("ollama_loaded_model_vram_bytes", "size_vram")):
            lines.append(f"# TYPE {family} gauge")
            lines += [f'{family}{{model="{runner.name}"}} {getattr(model, size)}' for runner in resident if (model := self.find(runner.name)) is not None]
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(self, request: Request) -> Response:
        return Response("404 page not found", status_code=404, media_type="text/plain")

    # The fake's own controls ---------------------------------------------------------------

    async def fake_echo(self, request: Request) -> Response:
        """What arrived: method, headers, query and body size (to check what the proxy forwards)."""
        body = await request.body()
        return JSONResponse(
            {"method": request.method, "headers": request.headers.items(), "query": request.url.query, "body_bytes": len(body)},
            headers={"x-fake-answer": "yes", "connection": "keep-alive, x-hop", "x-hop": "must-not-pass"},
        )

    async def fake_schedule(self, request: Request) -> Response:
        """The scheduler's ground truth: every part of each request's time (tests/fake/scheduler.py ``Truth``)."""
        return JSONResponse([{**vars(entry), "waiting_s": entry.waiting_s} for entry in self.scheduler.log])

    async def fake_residency(self, request: Request) -> Response:
        """Every load and unload, in order (tests/fake/scheduler.py ``Residency``); expiries due by now included."""
        self.scheduler.resident()
        return JSONResponse([vars(event) for event in self.scheduler.residency])

    async def fake_served(self, request: Request) -> Response:
        """Each request's time in the fake, by its id (TimedRequests)."""
        return JSONResponse(self.served)

    async def fake_stats(self, request: Request) -> Response:
        return JSONResponse({**self.stats.as_json(), "loading": self.scheduler.loading})

    async def fake_configure(self, request: Request) -> Response:
        """Set ``answers`` ({model: text}), ``chunk_texts`` ({model: text of every token}), ``add_models``
        ({name: FakeModel's fields}), ``aliases`` ({new name: existing name}, as ``ollama cp``), ``remove_models``,
        ``native_metrics`` (a /metrics as Ollama's pull request #18508 would add), ``answer_delay``, ``tool_preamble_tokens``,
        ``failures`` ({model: [status, message]}: every request for it answered so, as handleScheduleError writes a runner's failure),
        ``heal`` (models whose failures end), ``max_queue`` (OLLAMA_MAX_QUEUE), ``token_delay``, ``unload``, ``reset_stats``, ``parallel``, ``load_delay``, ``prompt_token_ms``,
        ``total_vram_gib`` and ``context_length`` (the default num_ctx's inputs), ``max_loaded_models`` (OLLAMA_MAX_LOADED_MODELS),
        ``version`` (the release spoken: "0.33.3" and later write the cached-token fields) and ``cache_ram_mib`` (llama-server's
        --cache-ram, for runners loaded from now on)."""
        body = await request.json()
        for name, fields in (body.get("add_models") or {}).items():
            self.models[name] = FakeModel(name, **{"size": 2_000_000_000, "size_vram": 2_000_000_000, **fields})
        for alias, existing in (body.get("aliases") or {}).items():
            self.models[alias] = FakeModel(**{**vars(self.models[existing]), "name": alias})
        if "total_vram_gib" in body:
            self.scheduler.total_vram = int(float(body["total_vram_gib"]) * GIB)
        if "context_length" in body:
            self.scheduler.context_env = int(body["context_length"]) or None
        for model, text in (body.get("answers") or {}).items():
            self.models.setdefault(model, FakeModel(model, 2_000_000_000, 2_000_000_000)).answer = text
        for model, text in (body.get("chunk_texts") or {}).items():
            self.models.setdefault(model, FakeModel(model, 2_000_000_000, 2_000_000_000)).chunk_text = text
        for model in body.get("remove_models") or []:
            gone = self.models.pop(model, None)
            if gone is not None and not any(other.blob == gone.blob for other in self.models.values()):
                self.scheduler.unload(gone.blob)
        if "native_metrics" in body:
            self.native_metrics = bool(body["native_metrics"])
        if "answer_delay" in body:
            self.answer_delay = float(body["answer_delay"])
        if "answer_tokens" in body:
            self.answer_tokens = int(body["answer_tokens"])
        for model, (status, message) in (body.get("failures") or {}).items():
            self.failures[model] = (int(status), str(message))
        for model in body.get("heal") or []:
            self.failures.pop(model, None)
        if "max_queue" in body:
            self.scheduler.max_queue = int(body["max_queue"])
        if "tool_preamble_tokens" in body:
            self.tool_preamble_tokens = int(body["tool_preamble_tokens"])
        if "first_delta_delay" in body:
            self.first_delta_delay = float(body["first_delta_delay"])
        if "token_delay" in body:
            self.token_delay = float(body["token_delay"])
        if body.get("unload"):
            self.scheduler.unload_all()
        if "parallel" in body:  # OLLAMA_NUM_PARALLEL, for runners loaded from now on: as if Ollama had started again with it
            self.scheduler.parallel = int(body["parallel"])
            if self.scheduler.server_log is not None:
                self.scheduler.server_log.server_config(self.scheduler.parallel)
        if "load_delay" in body:
            self.scheduler.load_delay = float(body["load_delay"])
        if "prompt_token_ms" in body:
            self.prompt_token_ns = int(float(body["prompt_token_ms"]) * 1e6)
        if "version" in body:  # the release spoken: from 0.33.3 the cached-token fields are written
            self.version = str(body["version"])
        if "cache_ram_mib" in body:  # llama-server's --cache-ram, for runners loaded from now on
            self.scheduler.cache_ram_bytes = int(body["cache_ram_mib"]) << 20
        if "max_loaded_models" in body:
            self.scheduler.max_runners = int(body["max_loaded_models"])
        if body.get("reset_stats"):
            self.stats = Stats()
            self.scheduler.log.clear()
            self.scheduler.residency.clear()
        return JSONResponse({"ok": True})


@contextlib.asynccontextmanager
async def _cloud() -> AsyncIterator[Ticket]:
    """What a cloud model's request holds in Ollama: no runner (its time is ollama.com's)."""
    yield Ticket(0, Truth("", "", ""))


def echo_request_id(app: Any) -> Any:
    """The fake's answers carry the caller's ``x-fake-request-id`` back (Ollama has no such header):
    a test that sends many requests at once can tell each answer is its own request's."""

    async def with_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        request_id = next((value for name, value in scope.get("headers", ()) if name == b"x-fake-request-id"), None)
        if request_id is None:
            return await app(scope, receive, send)

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"x-fake-request-id", request_id)]}
            await send(message)

        await app(scope, receive, send_with_id)

    return with_echo


class TimedRequests:
    """The fake's own time for each request that names itself (``x-fake-request-id``, else the trace id of its
    ``traceparent``): from its arrival to its answer's last byte, as Ollama's handler would spend it (``/fake/served``)."""

    def __init__(self, app: Any, served: dict[str, float]) -> None:
        self.app, self.served = app, served

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers", ())) if scope["type"] == "http" else {}
        traceparent = headers.get(b"traceparent", b"").split(b"-")
        request_id = (headers.get(b"x-fake-request-id") or (traceparent[1] if len(traceparent) == 4 else b"")).decode("latin-1")
        if not request_id:
            return await self.app(scope, receive, send)
        arrived = time.perf_counter()

        async def timed(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.served[request_id] = time.perf_counter() - arrived

        await self.app(scope, receive, timed)


def create_app(token_delay: float = 0.01, load_delay: float = 0.3, version: str = OLLAMA_VERSION, log: Path | None = None) -> Starlette:
    fake = FakeOllama(token_delay, load_delay, version, log)
    routes = [
        Route("/", fake.root, methods=["GET", "HEAD"]),
        Route("/api/version", fake.version_info),
        Route("/api/generate", fake.generate, methods=["POST"]),
        Route("/api/chat", fake.chat, methods=["POST"]),
        Route("/api/embed", fake.embed, methods=["POST"]),
        Route("/api/embeddings", fake.embeddings_legacy, methods=["POST"]),
        Route("/api/ps", fake.ps),
        Route("/api/tags", fake.tags),
        Route("/api/show", fake.show, methods=["POST"]),
        Route("/api/pull", fake.pull, methods=["POST"]),
        Route("/api/blobs/{digest}", fake.blob, methods=["POST", "HEAD"]),
        Route("/v1/chat/completions", fake.openai_chat, methods=["POST"]),
        Route("/v1/completions", fake.openai_completions, methods=["POST"]),
        Route("/v1/embeddings", fake.openai_embeddings, methods=["POST"]),
        Route("/v1/models", fake.openai_models),
        Route("/v1/responses", fake.responses, methods=["POST"]),
        Route("/v1/messages", fake.messages, methods=["POST"]),
        Route("/metrics", fake.metrics),
        Route("/fake/stats", fake.fake_stats),
        Route("/fake/schedule", fake.fake_schedule),
        Route("/fake/residency", fake.fake_residency),
        Route("/fake/served", fake.fake_served),
        Route("/fake/echo", fake.fake_echo, methods=["GET", "POST", "PUT"]),
        Route("/fake/configure", fake.fake_configure, methods=["POST"]),
        Route("/{path:path}", fake.not_found, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]),
    ]
    async def busy(request: Request, exc: Exception) -> Response:
        return fake._busy(request.url.path)

    middleware = [Middleware(AccessLog, log=fake.scheduler.server_log), Middleware(TimedRequests, served=fake.served)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={ServerBusy: busy})
    app.state.fake = fake
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Ollama for tests and benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--token-delay", type=float, default=0.01, help="seconds between streamed tokens")
    parser.add_argument("--load-delay", type=float, default=0.3, help="seconds a cold model load takes")
    parser.add_argument("--ollama-version", default=OLLAMA_VERSION, help="the release spoken (0.33.3 and later write the cached-token fields)")
    parser.add_argument("--log", type=Path, help="write Ollama's server log here (Gin's access lines, slog's records, llama-server's slot lines)")
    args = parser.parse_args()
    # Like Ollama (Go's http.Server with no IdleTimeout), idle keep-alive connections stay open: a day.
    uvicorn.run(
        echo_request_id(create_app(args.token_delay, args.load_delay, args.ollama_version, args.log)), host=args.host, port=args.port,
        log_level="warning", access_log=False, timeout_keep_alive=86_400,
    )


if __name__ == "__main__":
    main()
