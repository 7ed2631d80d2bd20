"""The four APIs ``ollama-load --api`` speaks: a request for each, and how to read its answer.

Each turns a prompt into (path, body) and reads the answer the way a client of that API
does: the first chunk that carries output (time to first token) and the token counts
Ollama reported (the NDJSON ``done`` line, the OpenAI ``usage`` chunk, the Responses API's
``response.completed``, the Anthropic API's ``message_delta``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Counts:
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None


def _usage(usage: Any, input_key: str, output_key: str) -> Counts:
    usage = usage if isinstance(usage, dict) else {}
    return Counts(int(usage.get(input_key) or 0), int(usage.get(output_key) or 0))


class Native:
    """/api/chat and /api/generate, alternately; NDJSON streams."""

    name = "native"
    framing = "ndjson"

    def request(self, model: str, number: int, prompt: str, stream: bool, max_tokens: int) -> tuple[str, dict[str, Any]]:
        options = {"num_predict": max_tokens}
        if number % 2:
            return "/api/chat", {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream, "options": options}
        return "/api/generate", {"model": model, "prompt": prompt, "stream": stream, "options": options}

    def is_output(self, event: str, data: dict[str, Any]) -> bool:
        return True  # Ollama sends no line without output but the last

    def counts(self, data: dict[str, Any]) -> Counts | None:
        if "error" in data:
            return Counts(error=str(data["error"]))
        if data.get("done") is True or "eval_count" in data:
            return Counts(int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0))
        return None


class OpenAIChat:
    """/v1/chat/completions, streamed with ``stream_options.include_usage``."""

    name = "openai"
    framing = "sse"

    def request(self, model: str, number: int, prompt: str, stream: bool, max_tokens: int) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream, "max_tokens": max_tokens}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return "/v1/chat/completions", body

    def is_output(self, event: str, data: dict[str, Any]) -> bool:
        choices = data.get("choices") or []
        delta = (choices[0].get("delta") or {}) if choices and isinstance(choices[0], dict) else {}
        return bool(delta.get("content") or delta.get("reasoning") or delta.get("tool_calls"))

    def counts(self, data: dict[str, Any]) -> Counts | None:
        if "error" in data:
            return Counts(error=str(data["error"]))
        if data.get("object") == "chat.completion" or (data.get("usage") and not data.get("choices")):  # the body, or the usage chunk
            return _usage(data.get("usage"), "prompt_tokens", "completion_tokens")
        return None


class Responses:
    """/v1/responses, the OpenAI Responses API."""

    name = "responses"
    framing = "sse"

    def request(self, model: str, number: int, prompt: str, stream: bool, max_tokens: int) -> tuple[str, dict[str, Any]]:
        return "/v1/responses", {"model": model, "input": prompt, "stream": stream, "max_output_tokens": max_tokens}

    def is_output(self, event: str, data: dict[str, Any]) -> bool:
        return event.endswith(".delta")

    def counts(self, data: dict[str, Any]) -> Counts | None:
        if data.get("type") == "response.completed":
            return _usage((data.get("response") or {}).get("usage"), "input_tokens", "output_tokens")
        if data.get("object") == "response":
            return _usage(data.get("usage"), "input_tokens", "output_tokens")
        if "error" in data and data["error"]:
            return Counts(error=json.dumps(data["error"]))
        return None


class Anthropic:
    """/v1/messages, the Anthropic Messages API."""

    name = "anthropic"
    framing = "sse"

    def request(self, model: str, number: int, prompt: str, stream: bool, max_tokens: int) -> tuple[str, dict[str, Any]]:
        return "/v1/messages", {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}], "stream": stream}

    def is_output(self, event: str, data: dict[str, Any]) -> bool:
        return event == "content_block_delta"

    def counts(self, data: dict[str, Any]) -> Counts | None:
        if data.get("type") == "error":
            return Counts(error=json.dumps(data.get("error")))
        if data.get("type") in ("message_delta", "message"):  # never message_start's estimate
            return _usage(data.get("usage"), "input_tokens", "output_tokens")
        return None


APIS = {api.name: api for api in (Native(), OpenAIChat(), Responses(), Anthropic())}
