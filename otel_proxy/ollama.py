"""What the proxy knows of Ollama's wire formats (read from Ollama 0.32.15's Go source).

Endpoints and the GenAI operation each one performs, how to learn the model and the
``stream`` flag from a request body, and where Ollama reports its counts and timings:
the final ``"done": true`` line of an /api NDJSON stream (server/routes.go, api/types.go),
the JSON body of a non-streaming call, the ``usage`` chunk of an OpenAI-compatible SSE
stream (middleware/openai.go), the ``response.completed`` event of the Responses API
(openai/responses.go) and the ``message_delta`` event of the Anthropic Messages API
(anthropic/anthropic.go). Durations on the wire are nanoseconds; everything returned
here is in seconds. Ollama leaves out every count and duration that is 0 (``omitempty``):
a missing one is "not reported", never zero.

The prompt tokens read from the runner's cache are reported from Ollama 0.33.3 on (PR #17943):
``prompt_eval_cached_count`` (native), ``usage.prompt_tokens_details.cached_tokens`` (/v1 chat and
completions), ``usage.input_tokens_details.cached_tokens`` (/v1/responses, a constant 0 before),
``usage.cache_read_input_tokens`` (/v1/messages, whose ``input_tokens`` then leaves them out, as
Anthropic's does). ``Report.input_tokens`` is always the whole prompt, cached tokens included, on
every API; ``Report.cached_input_tokens`` those of them read from the cache, None where not reported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ollama_otel_stack.ollama_routes import CHAT, EMBEDDINGS, OPERATIONS, OTHER_ROUTE, TEXT_COMPLETION, route_of  # noqa: F401  # the proxy's names for them
from ollama_otel_stack.ollama_versions import reports_cache

RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"

# Endpoints that stream unless the body says "stream": false.
_STREAM_BY_DEFAULT = {"/api/chat", "/api/generate", "/api/pull", "/api/push", "/api/create"}

_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,256})"')
_STREAM_FIELD = re.compile(rb'"stream"\s*:\s*(true|false)')
# Cloud models run on ollama.com, forwarded by the local server: tokens counted, no durations.
_CLOUD_SUFFIXES = ("-cloud", ":cloud")
# What json.loads raises for a body it cannot read, however it fails: bad syntax or UTF-8
# (ValueError) and nesting deeper than the interpreter's stack (RecursionError).
NOT_JSON = (ValueError, RecursionError)


def is_cloud_model(model: str | None) -> bool:
    return bool(model) and model.endswith(_CLOUD_SUFFIXES)  # type: ignore[union-attr]


@dataclass(frozen=True)
class RequestFacts:
    """What the proxy learns from a request body's first bytes."""

    model: str | None
    stream: bool
    include_usage: bool = False
    options: Any = None  # the body's "options" (a dict), {} when it has none; None when the body was too large to read whole
    keep_alive: Any = None


def read_request(route: str, body_prefix: bytes, complete: bool) -> RequestFacts:
    """Model and stream flag from a body (or its first bytes, if ``complete`` is false).

    Bodies that are not JSON are Ollama's to reject; the proxy just learns nothing.
    """
    stream_default = route in _STREAM_BY_DEFAULT
    if complete:
        try:
            body = json.loads(body_prefix)
        except NOT_JSON:
            return RequestFacts(None, stream_default)
        if not isinstance(body, dict):
            return RequestFacts(None, stream_default)
        model = body.get("model")
        stream = body.get("stream", stream_default)
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
        options = body.get("options")
        return RequestFacts(
            model if isinstance(model, str) and model else None,
            stream if isinstance(stream, bool) else stream_default,
            include_usage,
            options if isinstance(options, dict) else {},
            body.get("keep_alive"),
        )
    # A body larger than the prefix (a long prompt, images): find the fields by pattern.
    model_match = _MODEL_FIELD.search(body_prefix)
    stream_match = _STREAM_FIELD.search(body_prefix)
    try:
        model = json.loads(b'"' + model_match.group(1) + b'"') if model_match else None
    except NOT_JSON:
        model = None
    stream = stream_match.group(1) == b"true" if stream_match else stream_default
    return RequestFacts(model, stream, b'"include_usage":true' in body_prefix.replace(b" ", b""))


@dataclass
class Report:
    """Counts and timings Ollama reported for one request; None where it reported nothing."""

    input_tokens: int | None = None  # the whole prompt, the cached tokens included, on every API
    cached_input_tokens: int | None = None  # of them, read from the runner's prompt cache (Ollama 0.33.3 and later)
    output_tokens: int | None = None
    output_counted_from_chunks: bool = False  # a /v1 stream without usage: its content chunks, a lower bound
    finish_reason: str | None = None
    error: str | None = None
    reasoning: bool = False  # the answer carried reasoning ("thinking"); never its text
    tool_calls: bool = False  # the answer called tools; never their arguments
    first_output: str | None = None  # what a stream's first output was: "text", "reasoning" or "tool_call" (otel_proxy/watch.py)
    response_model: str | None = None
    # Ollama's durations (its native API only)
    load_s: float | None = None
    prompt_eval_s: float | None = None
    eval_s: float | None = None
    total_s: float | None = None


def _seconds(value: Any) -> float | None:
    return value / 1e9 if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_text(error: Any) -> str | None:
    if isinstance(error, str):
        return error
    if isinstance(error, dict):  # the OpenAI-compatible shape: {"error": {"message": ...}}
        return str(error.get("message") or error)
    return None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def report_from_native(body: dict[str, Any]) -> Report:
    """A final /api chunk or non-streaming /api body (generate, chat, embed)."""
    message = _object(body.get("message"))
    return Report(
        reasoning=bool(message.get("thinking")),
        tool_calls=bool(message.get("tool_calls")),
        input_tokens=_count(body.get("prompt_eval_count")),
        cached_input_tokens=_count(body.get("prompt_eval_cached_count")),
        output_tokens=_count(body.get("eval_count")),
        finish_reason=body.get("done_reason") if isinstance(body.get("done_reason"), str) else None,
        response_model=body.get("model") if isinstance(body.get("model"), str) else None,
        load_s=_seconds(body.get("load_duration")),
        prompt_eval_s=_seconds(body.get("prompt_eval_duration")),
        eval_s=_seconds(body.get("eval_duration")),
        total_s=_seconds(body.get("total_duration")),
        error=_error_text(body.get("error")),
    )


def report_from_openai(body: dict[str, Any]) -> Report:
    """A /v1 JSON body or SSE chunk: ``usage`` and the first choice's finish reason."""
    usage = _object(body.get("usage"))
    choices = body.get("choices")
    finish = None
    message: dict[str, Any] = {}
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        finish = choices[0].get("finish_reason")
        message = _object(choices[0].get("message"))
    return Report(
        reasoning=bool(message.get("reasoning")),
        tool_calls=bool(message.get("tool_calls")),
        input_tokens=_count(usage.get("prompt_tokens")),
        cached_input_tokens=_count(_object(usage.get("prompt_tokens_details")).get("cached_tokens")),
        output_tokens=_count(usage.get("completion_tokens")),
        finish_reason=finish if isinstance(finish, str) else None,
        response_model=body.get("model") if isinstance(body.get("model"), str) else None,
        error=_error_text(body.get("error")),
    )


def report_from_responses(response: dict[str, Any]) -> Report:
    """A Responses API response object: the non-streamed body, or ``response`` of ``response.completed``.

    Its status is the finish reason as the API names it (``completed``, or the reason an
    ``incomplete`` one stopped, e.g. ``max_output_tokens``). Its ``cached_tokens`` is read as written: an
    Ollama before 0.33.3 writes a constant 0 there, which ``Report.for_version`` then drops.
    """
    usage = _object(response.get("usage"))
    output = response.get("output") if isinstance(response.get("output"), list) else []
    kinds = {item.get("type") for item in output if isinstance(item, dict)}
    finish = _string(_object(response.get("incomplete_details")).get("reason")) or _string(response.get("status"))
    return Report(
        input_tokens=_count(usage.get("input_tokens")),
        cached_input_tokens=_count(_object(usage.get("input_tokens_details")).get("cached_tokens")),
        output_tokens=_count(usage.get("output_tokens")),
        finish_reason=finish,
        response_model=_string(response.get("model")),
        error=_error_text(response.get("error")),
        reasoning="reasoning" in kinds,
        tool_calls="function_call" in kinds,
    )


def anthropic_input(usage: dict[str, Any]) -> tuple[int | None, int | None]:
    """(the whole prompt, its tokens read from the cache) from Anthropic's usage, whose ``input_tokens`` leaves out
    the tokens read from or written to the cache (Ollama after #17943 counts so too)."""
    total, read, created = (_count(usage.get(name)) for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))
    return (None if total is None else total + (read or 0) + (created or 0)), read


def report_from_anthropic(body: dict[str, Any]) -> Report:
    """A non-streamed Anthropic Messages body (``usage``, ``stop_reason``, content blocks), or a stream's ``message_delta``."""
    usage = _object(body.get("usage"))
    content = body.get("content") if isinstance(body.get("content"), list) else []
    kinds = {block.get("type") for block in content if isinstance(block, dict)}
    total, cached = anthropic_input(usage)
    return Report(
        input_tokens=total,
        cached_input_tokens=cached,
        output_tokens=_count(usage.get("output_tokens")),
        finish_reason=_string(body.get("stop_reason")),
        response_model=_string(body.get("model")),
        error=_error_text(body.get("error")),
        reasoning="thinking" in kinds,
        tool_calls="tool_use" in kinds,
    )


def cached_tokens(route: str, report: Report, version: str | None) -> int | None:
    """The cached count a report carries, where it is one: /v1/responses' 0 is a count only from an Ollama that
    reports its cache (before 0.33.3, openai/responses.go writes a constant 0)."""
    if route == RESPONSES and report.cached_input_tokens == 0 and not reports_cache(version):
        return None
    return report.cached_input_tokens


def report_from_json(route: str, body: dict[str, Any]) -> Report:
    """The report in a parsed response body, read the way the route's API writes it."""
    if route == RESPONSES:
        return report_from_responses(body)
    if route == MESSAGES:
        return report_from_anthropic(body)
    return report_from_openai(body) if route.startswith("/v1/") else report_from_native(body)


def parse_json(text: bytes) -> Any:
    """``json.loads``, or None for anything it cannot read (however it fails)."""
    try:
        return json.loads(text)
    except NOT_JSON:
        return None


def report_from_body(route: str, body: bytes) -> Report:
    """The report carried by a complete, non-streaming response body."""
    parsed = parse_json(body)
    if parsed is None:
        return Report(error="response body is not JSON") if body.strip() else Report()
    if not isinstance(parsed, dict):
        return Report()
    return report_from_json(route, parsed)


_TAIL_FIELDS = re.compile(
    rb'(?<!\\)"(prompt_eval_count|prompt_eval_cached_count|eval_count|prompt_tokens|completion_tokens|input_tokens|output_tokens|'
    rb'cached_tokens|cache_read_input_tokens|cache_creation_input_tokens|load_duration|prompt_eval_duration|eval_duration|total_duration)":\s*(\d+)'
)


def report_from_tail(route: str, tail: bytes) -> Report:
    """For bodies too large to keep whole: the numeric fields Ollama writes last."""
    fields: dict[str, Any] = {name.decode(): int(value) for name, value in _TAIL_FIELDS.findall(tail)}
    if not route.startswith("/v1/"):
        return report_from_native(fields)
    if "cached_tokens" in fields:  # in the usage's details object, named for the API
        fields["input_tokens_details" if route == RESPONSES else "prompt_tokens_details"] = {"cached_tokens": fields.pop("cached_tokens")}
    return report_from_json(route, {"usage": fields})


# Every /v1 stream chunk that carries content has a null finish reason (Go's encoding);
# the closing chunk names the reason and the usage chunk has no choices at all.
SSE_CONTENT_CHUNK_MARKER = b'"finish_reason":null'


_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "not_found_error"}
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                          413: "request_too_large", 429: "rate_limit_error", 431: "invalid_request_error", 502: "api_error", 503: "overloaded_error"}


def error_body(route: str, status: int, message: str) -> bytes:
    """The proxy's own error answer in the shape of the API called, as Ollama writes each (openai.NewError,
    anthropic.NewError, gin.H{"error": ...}), so a client shows it as it would Ollama's."""
    if route == MESSAGES:
        payload: dict[str, Any] = {"type": "error", "error": {"type": _ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}}
    elif route.startswith("/v1/"):
        payload = {"error": {"message": message, "type": _OPENAI_ERROR_TYPES.get(status, "api_error"), "param": None, "code": None}}
    else:
        payload = {"error": message}
    return json.dumps(payload, separators=(",", ":")).encode()
