"""The Responses and Anthropic wire formats, as Ollama 0.32.15's Go source writes them.

Each function takes one "chat response" of the fake's model run (thinking, content, tool
calls, done with counts) and returns the SSE events Ollama's converters make of it, in
order, so that the fake's streams and bodies are what a client gets from Ollama:

- ``ResponsesStream``: ``openai/responses.go`` (``ResponsesStreamConverter.Process``), written
  by ``middleware/openai.go`` (``ResponsesWriter.writeEvent``: ``event: NAME\\ndata: JSON\\n\\n``,
  one flush an event). Event payloads are Go maps, so ``encoding/json`` sorts their keys.
- ``responses_body``: ``openai.ToResponse`` (a struct: fields in declaration order).
- ``MessagesStream``: ``anthropic/anthropic.go`` (``StreamConverter.Process``), written by
  ``middleware/anthropic.go`` (``writeSSE``). Structs: fields in declaration order,
  ``omitempty`` ones left out. ``message_start`` carries the estimated input tokens
  (``EstimateInputTokens``, characters / 4), ``message_delta`` the real counts.
- ``messages_body``: ``anthropic.ToMessagesResponse``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any


def go_json(value: Any, sort_keys: bool = False) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, with <, >, & and U+2028/9 escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text.encode()


@dataclass
class Piece:
    """One chat response of the model run: what Ollama's chat handler hands the converters."""

    content: str = ""
    thinking: str = ""
    tool_call: dict[str, Any] | None = None  # {"id", "name", "arguments": {...}}
    # Tokens this chunk carries: one, except where Ollama holds bytes back until a character is whole (a
    # character outside the BMP is two byte-level tokens here; x/mlxrunner/pipeline.go detokenizer, and
    # llama-server, which llm/llama_server.go Completion relays, likewise), then sends them as one chunk.
    tokens: int = 1
    done: bool = False
    done_reason: str = ""
    prompt_eval_count: int = 0
    eval_count: int = 0
    # of prompt_eval_count, the tokens read from the runner's cache: written only by an Ollama that reports it
    # (PR #17943, from 0.33.3); None where it does not, or does not know (a cloud model's answer)
    prompt_eval_cached_count: int | None = None


def responses_usage(done: Piece) -> dict[str, Any]:
    """openai.ResponsesUsage: input_tokens counts the cached ones too; before #17943 ``cached_tokens`` is a constant 0."""
    return {"input_tokens": done.prompt_eval_count, "output_tokens": done.eval_count, "total_tokens": done.prompt_eval_count + done.eval_count,
            "input_tokens_details": {"cached_tokens": done.prompt_eval_cached_count or 0}, "output_tokens_details": {"reasoning_tokens": 0}}


def messages_usage(done: Piece) -> dict[str, Any]:
    """anthropic.Usage: after #17943 as Anthropic counts, ``input_tokens`` the tokens not read from the cache and
    ``cache_read_input_tokens`` those that were (omitted where unknown)."""
    if done.prompt_eval_cached_count is None:
        return {"input_tokens": done.prompt_eval_count, "output_tokens": done.eval_count}
    return {"input_tokens": done.prompt_eval_count - done.prompt_eval_cached_count, "cache_read_input_tokens": done.prompt_eval_cached_count,
            "output_tokens": done.eval_count}


def sse(name: str, payload: Any, sort_keys: bool) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + go_json(payload, sort_keys) + b"\n\n"


def _output_text(text: str) -> dict[str, Any]:
    return {"annotations": [], "logprobs": [], "text": text, "type": "output_text"}


@dataclass
class ResponsesStream:
    response_id: str
    model: str
    request: dict[str, Any]
    sequence: int = 0
    output_index: int = 0
    started: bool = False
    content_started: bool = False
    tool_calls_sent: bool = False
    text: str = ""
    thinking: str = ""
    reasoning_id: str = ""
    completed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def item_id(self) -> str:
        return f"msg_{self.response_id.removeprefix('resp_')}_{self.output_index}"

    def _event(self, name: str, data: dict[str, Any]) -> bytes:
        data["type"] = name
        data["sequence_number"] = self.sequence
        self.sequence += 1
        return sse(name, data, sort_keys=True)

    def _response(self, status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
        reasoning = self.request.get("reasoning") or {}
        return {
            "id": self.response_id, "object": "response", "created_at": int(time.time()), "completed_at": None,
            "status": status, "incomplete_details": None, "model": self.model, "previous_response_id": None,
            "instructions": self.request.get("instructions") or None, "output": output, "error": None,
            "tools": [{"type": t.get("type"), "name": t.get("name"), "description": t.get("description"), "strict": t.get("strict"),
                       "parameters": t.get("parameters")} for t in self.request.get("tools") or []],
            "tool_choice": "auto", "truncation": "disabled", "parallel_tool_calls": True, "text": {"format": {"type": "text"}},
            "top_p": self.request.get("top_p", 1), "presence_penalty": 0, "frequency_penalty": 0, "top_logprobs": 0,
            "temperature": self.request.get("temperature", 1),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")} if reasoning else None,
            "usage": usage, "max_output_tokens": self.request.get("max_output_tokens"), "max_tool_calls": None, "store": False,
            "background": bool(self.request.get("background")), "service_tier": "default", "metadata": {},
            "safety_identifier": None, "prompt_cache_key": None,
        }

    def opening(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``: the first events, before any output."""
        self.started = True
        return [self._event(name, {"response": self._response("in_progress", [], None)}) for name in ("response.created", "response.in_progress")]

    def _finish_reasoning(self) -> list[bytes]:
        if not self.reasoning_id:
            return []
        item = {"id": self.reasoning_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": self.thinking}], "encrypted_content": self.thinking}
        self.completed.append(item)
        index, self.reasoning_id = self.output_index, ""
        self.output_index += 1
        return [
            self._event("response.reasoning_summary_text.done", {"item_id": item["id"], "output_index": index, "summary_index": 0, "text": self.thinking}),
            self._event("response.output_item.done", {"output_index": index, "item": item}),
        ]

    def process(self, piece: Piece) -> list[bytes]:
        events = [] if self.started else self.opening()
        if piece.thinking:
            if not self.reasoning_id:
                self.reasoning_id = f"rs_{abs(hash(self.response_id)) % 999999}"
                events.append(self._event("response.output_item.added", {"output_index": self.output_index, "item": {"id": self.reasoning_id, "type": "reasoning", "summary": []}}))
            self.thinking += piece.thinking
            events.append(self._event("response.reasoning_summary_text.delta", {"item_id": self.reasoning_id, "output_index": self.output_index, "summary_index": 0, "delta": piece.thinking}))
        if piece.tool_call is not None:
            events += self._finish_reasoning()
            call = piece.tool_call
            arguments = go_json(call["arguments"], sort_keys=True).decode()
            item = {"id": f"fc_{self.response_id}_0", "type": "function_call", "status": "completed", "call_id": call["id"], "name": call["name"], "arguments": arguments}
            events += [
                self._event("response.output_item.added", {"output_index": self.output_index, "item": {**item, "status": "in_progress", "arguments": ""}}),
                self._event("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": self.output_index, "delta": arguments}),
                self._event("response.function_call_arguments.done", {"item_id": item["id"], "output_index": self.output_index, "arguments": arguments}),
                self._event("response.output_item.done", {"output_index": self.output_index, "item": item}),
            ]
            self.completed.append(item)
            self.output_index += 1
            self.tool_calls_sent = True
        if piece.content and not self.tool_calls_sent:
            events += self._finish_reasoning()
            if not self.content_started:
                self.content_started = True
                events.append(self._event("response.output_item.added", {"output_index": self.output_index, "item": {"id": self.item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}))
                events.append(self._event("response.content_part.added", {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0, "part": _output_text("")}))
            self.text += piece.content
            events.append(self._event("response.output_text.delta", {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0, "delta": piece.content, "logprobs": []}))
        if piece.done:
            events += self._finish_reasoning()
            output = list(self.completed)
            if self.content_started and not self.tool_calls_sent:  # processCompletion: no message item once a call was sent
                message = {"id": self.item_id, "type": "message", "status": "completed", "role": "assistant", "content": [_output_text(self.text)]}
                events += [
                    self._event("response.output_text.done", {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0, "text": self.text, "logprobs": []}),
                    self._event("response.content_part.done", {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0, "part": _output_text(self.text)}),
                    self._event("response.output_item.done", {"output_index": self.output_index, "item": message}),
                ]
                output.append(message)
            response = self._response("completed", output, responses_usage(piece))
            response["completed_at"] = int(time.time())
            events.append(self._event("response.completed", {"response": response}))
        return events


def responses_body(response_id: str, model: str, request: dict[str, Any], whole: Piece) -> bytes:
    """A non-streamed /v1/responses answer: openai.ToResponse's struct, written by json.Encoder (a newline after)."""
    output: list[dict[str, Any]] = []
    if whole.thinking:
        output.append({"id": f"rs_{response_id}", "type": "reasoning", "summary": [{"type": "summary_text", "text": whole.thinking}], "encrypted_content": whole.thinking})
    if whole.tool_call is not None:
        call = whole.tool_call
        output.append({"id": f"fc_{response_id}_0", "type": "function_call", "status": "completed", "call_id": call["id"], "name": call["name"],
                       "arguments": go_json(call["arguments"], sort_keys=True).decode()})
    else:
        output.append({"id": f"msg_{response_id.removeprefix('resp_')}_0", "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": whole.content, "annotations": [], "logprobs": []}]})
    stream = ResponsesStream(response_id, model, request)
    body = stream._response("completed", output, responses_usage(whole))
    body["completed_at"] = int(time.time())
    body["tools"] = request.get("tools") or []
    reasoning = request.get("reasoning") or {}
    body["reasoning"] = {key: reasoning[key] for key in ("effort", "summary") if reasoning.get(key)} or None  # pointers, omitempty
    return go_json(body) + b"\n"


def stop_reason(done_reason: str, tool_calls: bool) -> str:
    """anthropic.mapStopReason."""
    if tool_calls:
        return "tool_use"
    return {"stop": "end_turn", "length": "max_tokens"}.get(done_reason, "stop_sequence" if done_reason else "")


@dataclass
class MessagesStream:
    message_id: str
    model: str
    estimated_input_tokens: int
    index: int = 0
    started: bool = False
    thinking_started: bool = False
    thinking_done: bool = False
    text_started: bool = False
    tool_calls: bool = False

    def _stop(self) -> bytes:
        return sse("content_block_stop", {"type": "content_block_stop", "index": self.index}, False)

    def opening(self) -> list[bytes]:
        self.started = True
        message = {"id": self.message_id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "usage": {"input_tokens": self.estimated_input_tokens, "output_tokens": 0}}
        return [sse("message_start", {"type": "message_start", "message": message}, False)]

    def process(self, piece: Piece) -> list[bytes]:
        events = [] if self.started else self.opening()
        if piece.thinking and not self.thinking_done:
            if not self.thinking_started:
                self.thinking_started = True
                events.append(sse("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": {"type": "thinking", "thinking": ""}}, False))
            events.append(sse("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": {"type": "thinking_delta", "thinking": piece.thinking}}, False))
        if piece.content:
            if self.thinking_started and not self.thinking_done:
                self.thinking_done = True
                events.append(self._stop())
                self.index += 1
            if not self.text_started:
                self.text_started = True
                events.append(sse("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": {"type": "text", "text": ""}}, False))
            events.append(sse("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": {"type": "text_delta", "text": piece.content}}, False))
        if piece.tool_call is not None:
            if self.thinking_started and not self.thinking_done:
                self.thinking_done = True
                events.append(self._stop())
                self.index += 1
            if self.text_started:
                events.append(self._stop())
                self.index += 1
                self.text_started = False
            call = piece.tool_call
            events += [
                sse("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": {"type": "tool_use", "id": call["id"], "name": call["name"], "input": {}}}, False),
                sse("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": {"type": "input_json_delta", "partial_json": go_json(call["arguments"], sort_keys=True).decode()}}, False),
                self._stop(),
            ]
            self.index += 1
            self.tool_calls = True
        if piece.done:
            if self.text_started or (self.thinking_started and not self.thinking_done):
                events.append(self._stop())
            delta = {"stop_reason": stop_reason(piece.done_reason, self.tool_calls)} if stop_reason(piece.done_reason, self.tool_calls) else {}
            events.append(sse("message_delta", {"type": "message_delta", "delta": delta, "usage": messages_usage(piece)}, False))
            events.append(sse("message_stop", {"type": "message_stop"}, False))
        return events


def messages_body(message_id: str, model: str, whole: Piece) -> bytes:
    """A non-streamed /v1/messages answer: anthropic.ToMessagesResponse, written by json.Encoder."""
    content: list[dict[str, Any]] = []
    if whole.thinking:
        content.append({"type": "thinking", "thinking": whole.thinking})
    if whole.content:
        content.append({"type": "text", "text": whole.content})
    if whole.tool_call is not None:
        content.append({"type": "tool_use", "id": whole.tool_call["id"], "name": whole.tool_call["name"], "input": whole.tool_call["arguments"]})
    body: dict[str, Any] = {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": content}
    reason = stop_reason(whole.done_reason, whole.tool_call is not None)
    if reason:
        body["stop_reason"] = reason
    body["usage"] = messages_usage(whole)
    return go_json(body) + b"\n"


def anthropic_error(status: int, message: str) -> bytes:
    """anthropic.NewError, written by gin's AbortWithStatusJSON."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}.get(status, "api_error")
    return go_json({"type": "error", "error": {"type": kind, "message": message}, "request_id": f"req_{int(time.time() * 1e6) % 10**12:012x}"})


def estimate_input_tokens(request: dict[str, Any]) -> int:
    """anthropic.EstimateInputTokens: characters / 4 over system and messages."""
    characters = len(json.dumps(request.get("system") or "")) if request.get("system") else 0
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else ""
        characters += len(content) if isinstance(content, str) else len(json.dumps(content))
    return max(1, characters // 4)
