"""What the runner is handed: a request's conversation rendered as one prompt and tokenized, as Ollama does before it
calls llama-server, and cut to the context as Ollama cuts it.

The fake has no model, so its "tokens" are words: every word of the system prompt, the tools offered and each message
(its text, its tool calls, its tool results) is one token, its id a hash of the word. What matters for the prompt cache
is kept: the same conversation renders the same tokens on every API (Ollama converts /v1/chat/completions,
/v1/responses and /v1/messages to its own messages first: openai/openai.go ``FromChatRequest``, openai/responses.go
``FromResponsesRequest``, anthropic/anthropic.go ``FromMessagesRequest``), an answer the model generated renders, sent
back as the next turn's assistant message, as the tokens it was generated as, and an edit changes the tokens from the
edited word on.

Two cuts (both in Ollama, neither in llama-server):

- server/prompt.go ``chatPrompt``: a chat whose rendered prompt is longer than ``num_ctx`` loses its oldest messages
  (system messages kept, the last message always) until it fits (logged at debug level only);
- llm/llama_server.go ``completionPromptForRequest``: a prompt still longer than ``num_ctx - 1`` keeps its first
  ``num_keep`` tokens (+1 for a tokenizer that adds BOS) and the tail, ``contextShiftPromptLimit`` long, with
  ``slog.Warn("truncating input prompt", …)``.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_NUM_KEEP = 4  # api.DefaultOptions NumKeep
TOOL_CALL_TOKENS = 6  # what a tool call costs: its tokens, in eval_count and in the prompt it is sent back in


def word_ids(text: str) -> list[int]:
    return [zlib.crc32(word.encode()) for word in text.split()]


def tool_call_ids(name: str, arguments: Any) -> list[int]:
    """A tool call's tokens, the same whether the model generated it or a client sends it back: arguments as an object
    (native, /v1/messages' ``input``) or as its JSON text (OpenAI's and Responses' ``arguments``)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass
    seed = zlib.crc32(json.dumps([name, arguments], sort_keys=True, separators=(",", ":")).encode())
    return [(seed + index) & 0xFFFFFFFF for index in range(TOOL_CALL_TOKENS)]


def _text(value: Any) -> str:
    """A message's content: a string, or a list of parts (OpenAI's and Responses' text parts, Anthropic's blocks)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text(part.get("text", part.get("content", ""))) if isinstance(part, dict) else _text(part) for part in value)
    return "" if value is None else str(value)


def _calls(calls: Any) -> list[int]:
    ids: list[int] = []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function", call) if isinstance(call, dict) else {}
        if isinstance(function, dict):
            ids += tool_call_ids(str(function.get("name", "")), function.get("arguments", function.get("input", {})))
    return ids


def _anthropic_content(content: Any) -> list[int]:
    if not isinstance(content, list):
        return word_ids(_text(content))
    ids: list[int] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_use":
            ids += tool_call_ids(str(block.get("name", "")), block.get("input", {}))
        elif block.get("type") == "tool_result":
            ids += word_ids(_text(block.get("content")))
        else:
            ids += word_ids(_text(block.get("text", "")))
    return ids


def _responses_input(value: Any) -> list[list[int]]:
    if not isinstance(value, list):
        return [word_ids(_text(value))]
    messages = []
    for item in value:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "function_call":
            messages.append(tool_call_ids(str(item.get("name", "")), item.get("arguments", "{}")))
        elif kind == "function_call_output":
            messages.append(word_ids(_text(item.get("output"))))
        elif kind == "message":
            messages.append(word_ids(_text(item.get("content"))))
    return messages


@dataclass
class Prompt:
    """The system part (kept whole by chatPrompt) and each message's tokens, in order."""

    system: list[int]
    messages: list[list[int]]

    def tokens(self, first: int = 0) -> list[int]:
        return self.system + [token for message in self.messages[first:] for token in message]


def render(route: str, body: dict[str, Any]) -> Prompt:
    """The request's prompt as Ollama renders it for the route's API."""
    tools = word_ids(json.dumps(body.get("tools"), sort_keys=True)) if body.get("tools") else []
    if route == "/v1/messages":
        system = word_ids(_text(body.get("system")))
        messages = [_anthropic_content(message.get("content")) for message in body.get("messages") or [] if isinstance(message, dict)]
    elif route == "/v1/responses":
        system = word_ids(_text(body.get("instructions")))
        messages = _responses_input(body.get("input"))
    elif "messages" in body:  # /api/chat, /v1/chat/completions: system messages stay whole through chatPrompt's cut
        listed = [message for message in body.get("messages") or [] if isinstance(message, dict)]
        system = [token for message in listed if message.get("role") == "system" for token in word_ids(_text(message.get("content")))]
        messages = [word_ids(_text(message.get("content"))) + _calls(message.get("tool_calls")) for message in listed if message.get("role") != "system"]
    else:  # /api/generate, /v1/completions
        system = word_ids(_text(body.get("system")))
        messages = [word_ids(_text(body.get("prompt")))]
    return Prompt(system + tools, messages)


@dataclass
class Truncation:
    """completionPromptForRequest's cut, as its warning reports it."""

    limit: int
    prompt: int
    keep: int
    new: int


def fit(prompt: Prompt, num_ctx: int, num_keep: int = DEFAULT_NUM_KEEP, adds_bos: bool = False) -> tuple[np.ndarray, Truncation | None]:
    """The tokens llama-server is given (at least one), and the runner's truncation where there was one."""
    first = 0
    while first < len(prompt.messages) - 1 and len(prompt.tokens(first)) > num_ctx:  # chatPrompt
        first += 1
    tokens = prompt.tokens(first) or [0]
    limit = num_ctx - 1
    if num_ctx <= 1 or len(tokens) <= limit:
        return np.asarray(tokens, dtype=np.uint32), None
    keep = len(tokens) if num_keep < 0 else num_keep
    keep = min(keep + (1 if adds_bos else 0), limit)
    keep = max(0, min(keep, num_ctx - 1))
    new_limit = num_ctx - max((num_ctx - keep) // 2, 1)  # contextShiftPromptLimit
    discard = len(tokens) - new_limit
    cut = tokens[:keep] + tokens[keep + discard:]
    return np.asarray(cut, dtype=np.uint32), Truncation(new_limit, len(tokens), keep, len(cut))
