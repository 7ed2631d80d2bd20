"""Watchers that read Ollama's report from a response as it streams past.

Each one is fed every chunk on the proxy's hot path, so ``feed`` does the least it can
(a reference kept, a byte count) and the parsing waits for ``report`` at the end.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Protocol

from otel_proxy import ollama
from otel_proxy.ollama import Report

# A final /api line carries Ollama's `context` (one int per token): large, but bounded.
MAX_LINE_BYTES = 16 << 20
MAX_BODY_BYTES = 16 << 20
TAIL_CHUNKS = 8


class Watcher(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def report(self) -> Report: ...


class NdjsonWatcher:
    """An /api stream: one JSON object a line, Ollama's counts in the last (``"done": true``)."""

    def __init__(self) -> None:
        self._last: bytes = b""  # the latest chunk(s) that ended on a line boundary
        self._partial: list[bytes] = []
        self._partial_size = 0

    def feed(self, chunk: bytes) -> None:
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
        try:
            final = json.loads(last)
        except ValueError:
            return Report(error="the stream ended on a line that is not JSON")
        if not isinstance(final, dict):
            return Report(error="the stream ended on a line that is not a JSON object")
        report = ollama.report_from_native(final)
        if report.error is None and final.get("done") is not True:
            report.error = "the stream ended before Ollama's final chunk"
        return report


class SseWatcher:
    """A /v1 stream: ``data: {...}`` events, the usage chunk (if asked for), ``data: [DONE]``."""

    def __init__(self) -> None:
        self._tail: deque[bytes] = deque(maxlen=TAIL_CHUNKS)
        self._content_chunks = 0

    def feed(self, chunk: bytes) -> None:
        self._tail.append(chunk)
        self._content_chunks += chunk.count(ollama.SSE_CONTENT_CHUNK_MARKER)

    def report(self) -> Report:
        tail = b"".join(self._tail)
        events = [line[5:].strip() for line in tail.split(b"\n") if line.startswith(b"data:")]
        report = Report()
        for event in reversed(events):
            if event == b"[DONE]":
                continue
            try:
                body = json.loads(event)
            except ValueError:
                continue  # the first event in the tail may be cut
            if not isinstance(body, dict):
                continue
            found = ollama.report_from_openai(body)
            report.input_tokens = report.input_tokens if report.input_tokens is not None else found.input_tokens
            report.output_tokens = report.output_tokens if report.output_tokens is not None else found.output_tokens
            report.finish_reason = report.finish_reason or found.finish_reason
            report.response_model = report.response_model or found.response_model
            report.error = report.error or found.error
            if report.finish_reason and report.output_tokens is not None:
                break
        if report.output_tokens is None and report.error is None:
            report.output_tokens = self._content_chunks
            report.output_counted_from_chunks = True
        if b"[DONE]" not in tail and report.error is None:
            report.error = "the stream ended before data: [DONE]"
        return report


class BodyWatcher:
    """A whole (non-streaming) body: kept up to a bound, then only its tail, where Ollama puts its counts."""

    def __init__(self, route: str) -> None:
        self._route = route
        self._chunks: list[bytes] = []
        self._size = 0
        self._tail: deque[bytes] | None = None

    def feed(self, chunk: bytes) -> None:
        if self._tail is not None:
            self._tail.append(chunk)
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > MAX_BODY_BYTES:
            self._tail = deque(self._chunks[-TAIL_CHUNKS:], maxlen=TAIL_CHUNKS)
            self._chunks = []

    def report(self) -> Report:
        if self._tail is not None:
            return ollama.report_from_tail(self._route, b"".join(self._tail))
        return ollama.report_from_body(self._route, b"".join(self._chunks))


class NothingToWatch:
    """Routes that generate nothing (tags, pull, blobs...): their bodies are not looked at."""

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
        return SseWatcher()
    return BodyWatcher(route)
