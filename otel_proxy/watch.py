"""Watchers that read Ollama's report from a response as it streams past.

Each one is fed every chunk on the proxy's hot path, so ``feed`` does the least it can
(a reference kept, a byte count, a search for a marker until it is found) and the
parsing waits for ``report`` at the end. ``first_output_at`` is when the first chunk
carrying output (text, reasoning or a tool call) went by, for the streams whose first
events carry none (the Responses and Anthropic APIs open with bookkeeping events); None
means the first chunk is the first output, as on /api and /v1/chat/completions. The report says what that first
output was (``Report.first_output``: text, reasoning or a tool call): an answer that opens with a tool call was
generated whole before it (Ollama's parsers hold a call back until it is complete: server/routes.go ChatHandler,
tools/tools.go), so the time to it is no time to a first token, and the time after it is no generation time.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

from otel_proxy import ollama
from otel_proxy.ollama import Report, parse_json

# A final /api line carries Ollama's `context` (one int per token): large, but bounded.
MAX_LINE_BYTES = 16 << 20
TEXT, REASONING, TOOL_CALL = "text", "reasoning", "tool_call"  # what a stream's first output was
MAX_BODY_BYTES = 16 << 20
# The end of a stream kept for its report: the last events, however many reads they came in (TCP splits an
# event wherever a segment ends; over a network that is every ~1.4 kB).
TAIL_BYTES = 8 << 10


class Tail:
    """The last chunks of a stream, at least ``TAIL_BYTES`` of them (fewer only when the stream is shorter)."""

    __slots__ = ("_chunks", "_size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size >= 2 * TAIL_BYTES:  # trimmed now and then, not at every chunk
            self._trim()

    def _trim(self) -> None:
        chunks = self._chunks
        while chunks and self._size - len(chunks[0]) >= TAIL_BYTES:
            self._size -= len(chunks.popleft())

    def bytes(self) -> bytes:
        self._trim()
        return b"".join(self._chunks)


class Seam:
    """Finds markers in a stream whatever the chunk boundaries: the end of the previous chunk is kept (the
    longest marker less a byte), so a marker split across two chunks is seen once, in the chunk it ends in."""

    __slots__ = ("_carry", "_keep", "_separator", "clean")

    def __init__(self, separator: bytes, *markers: bytes) -> None:
        # ``clean``: the previous chunk ended on ``separator`` (Ollama's usual write: whole lines, whole events);
        # no marker has a proper prefix ending in it, so none can span the seam and the chunk alone is searched
        assert not any(separator in marker[:-1] for marker in markers)
        self._keep = max(len(marker) for marker in markers) - 1
        self._separator = separator
        self._carry = b""
        self.clean = True

    def _joined(self, chunk: bytes, marker: bytes) -> bytes:
        """The previous chunk's last bytes and this one's first, each a byte shorter than ``marker``: any
        ``marker`` in them spans the seam."""
        keep = len(marker) - 1
        return self._carry[max(0, len(self._carry) - keep):] + chunk[:keep] if keep else b""

    def count(self, chunk: bytes, marker: bytes) -> int:
        return chunk.count(marker) + self._joined(chunk, marker).count(marker)

    def seen(self, chunk: bytes, marker: bytes) -> bool:
        return marker in chunk or marker in self._joined(chunk, marker)

    def joined_find(self, chunk: bytes, marker: bytes) -> int:
        """Where ``marker`` is, counted in the bytes kept of the previous chunk followed by this one (-1: nowhere)."""
        keep = len(marker) - 1
        carried = self._carry[max(0, len(self._carry) - keep):]
        return (carried + chunk).find(marker)

    def begun(self, chunk: bytes, marker: bytes) -> bytes | None:
        """The bytes of ``marker`` that came in the previous chunk, where it spans the seam (else None)."""
        joined = self._joined(chunk, marker)
        at = joined.find(marker)
        return None if at < 0 else joined[at: len(joined) - min(len(chunk), len(marker) - 1)]

    def passed(self, chunk: bytes) -> None:
        if chunk.endswith(self._separator):
            self.clean, self._carry = True, b""
            return
        self.clean = False
        keep = self._keep
        self._carry = chunk[len(chunk) - keep:] if len(chunk) >= keep else (self._carry + chunk)[-keep:]


class Watcher(Protocol):
    first_output_at: float | None

    def feed(self, chunk: bytes) -> None: ...

    def report(self) -> Report: ...


def first_output(reasoning: bool, tool_call: bool, text: bool) -> str | None:
    """What came first, where Ollama's order is fixed: reasoning before any content, text before a tool call (which
    comes whole, at the end of its turn); None for a stream that carried no output at all."""
    return REASONING if reasoning else TEXT if text else TOOL_CALL if tool_call else None


def sse_events(text: bytes) -> list[tuple[bytes, bytes]]:
    """``(event name, data)`` for each whole SSE event in ``text`` (name b"" where none is given)."""
    events = []
    for block in text.split(b"\n\n"):
        name, data = b"", []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, b"\n".join(data)))
    return events


class NdjsonWatcher:
    """An /api stream: one JSON object a line, Ollama's counts in the last (``"done": true``)."""

    first_output_at = None

    _THINKING = b'"thinking":"'  # api.Message.Thinking, omitempty
    _TOOL_CALLS = b'"tool_calls":['

    def __init__(self) -> None:
        self._last: bytes = b""  # the latest chunk(s) that ended on a line boundary
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._first_line = True
        self._later = False  # a line came after the first (the first was output, not the final line alone)
        self._tool_first = False  # the first line called a tool
        self._reasoning = False
        self._tool_calls = False
        self._seam = Seam(b"\n", self._THINKING, self._TOOL_CALLS)

    def feed(self, chunk: bytes) -> None:
        seam = self._seam
        if seam.clean and not self._first_line:  # the usual case: a whole line after whole lines
            self._later = True
            if not self._tool_calls and self._TOOL_CALLS in chunk:
                self._tool_calls = True
        else:
            if self._first_line:  # Ollama's thinking comes before any content: the first line says whether there is any
                self._reasoning = self._reasoning or seam.seen(chunk, self._THINKING)
                self._tool_first = self._tool_first or seam.seen(chunk, self._TOOL_CALLS)
                end = chunk.find(b"\n")
                self._first_line = end < 0
                self._later = 0 <= end < len(chunk) - 1
            else:
                self._later = True
            if not self._tool_calls and seam.seen(chunk, self._TOOL_CALLS):
                self._tool_calls = True
        seam.passed(chunk)
        if chunk.endswith(b"\n") and not self._partial:
            self._last = chunk  # the usual case: Ollama flushes one whole line a write
            return
        self._partial.append(chunk)
        self._partial_size += len(chunk)
        if chunk.endswith(b"\n"):
            self._last = b"".join(self._partial)
            self._partial.clear()
            self._partial_size = 0
        elif self._partial_size > MAX_LINE_BYTES:
            self._partial.clear()  # an endless line: learn nothing rather than hold it
            self._partial_size = 0
            self._last = b""

    def report(self) -> Report:
        text = b"".join(self._partial) if self._partial else self._last
        lines = text.rstrip(b"\n").rsplit(b"\n", 1)
        last = lines[-1].strip()
        if not last:
            return Report(error="the stream ended without Ollama's final chunk")
        final = parse_json(last)
        if final is None:
            return Report(error="the stream ended on a line that is not JSON")
        if not isinstance(final, dict):
            return Report(error="the stream ended on a line that is not a JSON object")
        report = ollama.report_from_native(final)
        report.reasoning = report.reasoning or self._reasoning
        report.tool_calls = report.tool_calls or self._tool_calls
        if self._later:
            report.first_output = first_output(self._reasoning, self._tool_first, not self._tool_first)
        if report.error is None and final.get("done") is not True:
            report.error = "the stream ended before Ollama's final chunk"
        return report


class SseWatcher:
    """A /v1 chat or completions stream: ``data: {...}`` events, the usage chunk (if asked for), ``data: [DONE]``."""

    first_output_at = None

    _REASONING = b'"reasoning":"'  # openai.Delta.Reasoning, omitempty
    _TOOL_CALLS = b'"tool_calls":['  # openai.Delta.ToolCalls, before the chunk's finish_reason

    def __init__(self) -> None:
        self._tail = Tail()
        self._content_chunks = 0
        self._reasoning = False
        self._tool_first = False  # the first content chunk called a tool
        self._seam = Seam(b"\n\n", ollama.SSE_CONTENT_CHUNK_MARKER, self._REASONING, self._TOOL_CALLS)

    def feed(self, chunk: bytes) -> None:
        self._tail.add(chunk)
        seam = self._seam
        if seam.clean:  # the usual case: whole events
            if not self._content_chunks and not self._reasoning:  # Ollama's reasoning comes before any content
                self._reasoning = self._REASONING in chunk
                self._tool_first = self._TOOL_CALLS in chunk.split(ollama.SSE_CONTENT_CHUNK_MARKER, 1)[0]
            self._content_chunks += chunk.count(ollama.SSE_CONTENT_CHUNK_MARKER)
        else:
            if not self._content_chunks and not self._reasoning:
                self._reasoning = seam.seen(chunk, self._REASONING)
                self._tool_first = self._tool_first or seam.seen(chunk, self._TOOL_CALLS)
            self._content_chunks += seam.count(chunk, ollama.SSE_CONTENT_CHUNK_MARKER)
        seam.passed(chunk)

    def report(self) -> Report:
        tail = self._tail.bytes()
        events = [line[5:].strip() for line in tail.split(b"\n") if line.startswith(b"data:")]
        report = Report(reasoning=self._reasoning)
        for event in reversed(events):
            if event == b"[DONE]":
                continue
            body = parse_json(event)  # None for the first event in the tail, which may be cut
            if not isinstance(body, dict):
                continue
            found = ollama.report_from_openai(body)
            report.input_tokens = report.input_tokens if report.input_tokens is not None else found.input_tokens
            report.cached_input_tokens = report.cached_input_tokens if report.cached_input_tokens is not None else found.cached_input_tokens
            report.output_tokens = report.output_tokens if report.output_tokens is not None else found.output_tokens
            report.finish_reason = report.finish_reason or found.finish_reason
            report.response_model = report.response_model or found.response_model
            report.error = report.error or found.error
            if report.finish_reason and report.output_tokens is not None:
                break
        # Ollama's finish chunk says "tool_calls" once a tool call was streamed (openai.FinishChunk): no search per chunk.
        report.tool_calls = report.finish_reason == "tool_calls"
        if self._content_chunks:
            report.first_output = first_output(self._reasoning, self._tool_first, not self._tool_first)
        if report.output_tokens is None and report.error is None and self._content_chunks and not report.tool_calls:
            # No usage chunk (stream_options.include_usage not asked for): Ollama sends a token a
            # chunk. Not so for a tool call (its tokens come as one chunk), and no chunk matched:
            # then the count is unknown, and left out rather than guessed or made 0.
            report.output_tokens = self._content_chunks
            report.output_counted_from_chunks = True
        if b"[DONE]" not in tail and report.error is None:
            report.error = "the stream ended before data: [DONE]"
        return report


class ResponsesWatcher:
    """A /v1/responses stream (openai/responses.go): named events, no ``[DONE]``.

    ``response.created`` and ``response.in_progress`` (and the item and part that open the
    answer) come before any token; the first ``...delta`` event is the first output. The
    counts come only in the terminal ``response.completed``, which repeats the whole answer:
    it is kept from its first byte on, however many reads it spans.
    """

    _OUTPUT = b".delta\ndata:"  # output_text, reasoning_summary_text, function_call_arguments
    _COMPLETED = b"event: response.completed\n"
    # the first delta's name says what the first output was (the completed response does not: once a call is sent, its
    # text item is left out, openai/responses.go processCompletion)
    _KINDS = ((b"output_text.delta\n", TEXT), (b"reasoning_summary_text.delta\n", REASONING), (b"function_call_arguments.delta\n", TOOL_CALL))

    def __init__(self) -> None:
        self.first_output_at: float | None = None
        self._first_output: str | None = None
        self._tail = Tail()
        self._final: list[bytes] | None = None
        self._final_size = 0
        self._seam = Seam(b"\n\n", self._OUTPUT, self._COMPLETED, *(marker for marker, _ in self._KINDS))

    def feed(self, chunk: bytes) -> None:
        seam = self._seam
        if self.first_output_at is None and (self._OUTPUT in chunk or not seam.clean and seam.seen(chunk, self._OUTPUT)):
            self.first_output_at = time.perf_counter()
        if self._first_output is None:  # its delta's name comes before the output marker ends: searched for from the start
            found = [(at, kind) for marker, kind in self._KINDS if (at := (chunk.find(marker) if seam.clean else seam.joined_find(chunk, marker))) >= 0]
            self._first_output = min(found)[1] if found else None
        if self._final is not None:
            if self._final_size < MAX_BODY_BYTES:
                self._final.append(chunk)
                self._final_size += len(chunk)
            return
        self._tail.add(chunk)
        head = None if seam.clean else seam.begun(chunk, self._COMPLETED)
        if head is not None:  # its name split across two reads
            self._final = [head, chunk]
        else:
            at = chunk.find(self._COMPLETED)
            if at >= 0:
                self._final = [chunk[at:]]
        if self._final is not None:
            self._final_size = sum(len(part) for part in self._final)
        seam.passed(chunk)

    def report(self) -> Report:
        text = b"".join(self._final) if self._final is not None else self._tail.bytes()
        report = None
        error = None
        for name, data in sse_events(text):
            body = parse_json(data)
            if not isinstance(body, dict):
                continue
            if name == b"response.completed":
                report = ollama.report_from_responses(body.get("response") if isinstance(body.get("response"), dict) else {})
            elif name in (b"response.failed", b"error"):
                failed = body.get("response") if isinstance(body.get("response"), dict) else body
                error = ollama.report_from_responses(failed).error or "the response failed"
        if report is None:
            return Report(error=error or "the stream ended before response.completed")
        report.first_output = self._first_output
        return report


class MessagesWatcher:
    """A /v1/messages stream (anthropic/anthropic.go): ``message_start``, content blocks, ``message_delta``, ``message_stop``.

    ``message_start`` carries Ollama's estimate of the input (characters / 4), never used:
    the real counts and the stop reason come in ``message_delta``.
    """

    _OUTPUT = b"event: content_block_delta\n"
    _BLOCK_START = b"event: content_block_start\n"
    # content_block_start's block types; a delta's are thinking_delta and input_json_delta, and text inside a
    # JSON string has its quotes escaped, so these two appear nowhere else
    _THINKING = b'"type":"thinking"'
    _TOOL_USE = b'"type":"tool_use"'
    _TEXT = b'"type":"text"'  # a text block's start (a delta's type is text_delta)
    _REPORTED = (b"message_delta", b"message_stop", b"error")

    def __init__(self) -> None:
        self.first_output_at: float | None = None
        self._tail = Tail()
        self._reasoning = False
        self._tool_calls = False
        self._text = False
        self._seam = Seam(b"\n\n", self._OUTPUT, self._BLOCK_START, self._THINKING, self._TOOL_USE, self._TEXT)

    def feed(self, chunk: bytes) -> None:
        self._tail.add(chunk)
        seam = self._seam
        if seam.clean:  # the usual case: whole events; block types only in a content_block_start
            if self.first_output_at is None and self._OUTPUT in chunk:
                self.first_output_at = time.perf_counter()
            if self._BLOCK_START in chunk:
                self._reasoning = self._reasoning or self._THINKING in chunk
                self._tool_calls = self._tool_calls or self._TOOL_USE in chunk
                self._text = self._text or self._TEXT in chunk
        else:
            if self.first_output_at is None and seam.seen(chunk, self._OUTPUT):
                self.first_output_at = time.perf_counter()
            self._reasoning = self._reasoning or seam.seen(chunk, self._THINKING)
            self._tool_calls = self._tool_calls or seam.seen(chunk, self._TOOL_USE)
            self._text = self._text or seam.seen(chunk, self._TEXT)
        seam.passed(chunk)

    def report(self) -> Report:
        report = Report(reasoning=self._reasoning, tool_calls=self._tool_calls)
        stopped = False
        tail = self._tail.bytes()
        # Ollama's counts and the end come last: read from the last delta, or an error, on
        starts = [at for at in (tail.rfind(b"event: message_delta\n"), tail.rfind(b"event: error\n")) if at >= 0]
        for name, data in sse_events(tail[min(starts):] if starts else tail):
            if name not in self._REPORTED:
                continue
            body = parse_json(data)
            if not isinstance(body, dict):
                continue
            if name == b"message_delta":
                usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
                delta = body.get("delta") if isinstance(body.get("delta"), dict) else {}
                found = ollama.report_from_anthropic({"usage": usage, "stop_reason": delta.get("stop_reason")})
                report.input_tokens, report.output_tokens, report.finish_reason = found.input_tokens, found.output_tokens, found.finish_reason
                report.cached_input_tokens = found.cached_input_tokens
            elif name == b"message_stop":
                stopped = True
            elif name == b"error":
                report.error = ollama.report_from_anthropic(body).error or "the stream carried an error event"
        if not stopped and report.error is None:
            report.error = "the stream ended before message_stop"
        report.first_output = first_output(self._reasoning, self._tool_calls, self._text)
        return report


class BodyWatcher:
    """A whole (non-streaming) body: kept up to a bound, then only its tail, where Ollama puts its counts."""

    first_output_at = None

    def __init__(self, route: str) -> None:
        self._route = route
        self._chunks: list[bytes] = []
        self._size = 0
        self._tail: Tail | None = None

    def feed(self, chunk: bytes) -> None:
        if self._tail is not None:
            self._tail.add(chunk)
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > MAX_BODY_BYTES:
            self._tail = Tail()
            for kept in self._chunks:
                self._tail.add(kept)
            self._chunks = []

    def report(self) -> Report:
        if self._tail is not None:
            return ollama.report_from_tail(self._route, self._tail.bytes())
        return ollama.report_from_body(self._route, b"".join(self._chunks))


class NothingToWatch:
    """Routes that generate nothing (tags, pull, blobs...): their bodies are not looked at."""

    first_output_at = None

    def feed(self, chunk: bytes) -> None:
        pass

    def report(self) -> Report:
        return Report()


NOTHING_TO_WATCH = NothingToWatch()


def watcher_for(route: str, content_type: str) -> Watcher:
    if route not in ollama.OPERATIONS:
        return NOTHING_TO_WATCH
    if content_type.startswith("application/x-ndjson"):
        return NdjsonWatcher()
    if content_type.startswith("text/event-stream"):
        if route == ollama.RESPONSES:
            return ResponsesWatcher()
        if route == ollama.MESSAGES:
            return MessagesWatcher()
        return SseWatcher()
    return BodyWatcher(route)
