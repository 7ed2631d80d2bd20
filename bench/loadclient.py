"""A lean HTTP/1.1 streaming client for the benchmarks: an asyncio protocol on uvloop,
keep-alive, chunked decoding, and per request: the arrival of the first body chunk, of the
last, the largest gap between two and the chunks counted. Python clients
like httpx cost more per chunk than the proxy under test; this one stays out of the way
(it shares the machine's cores with the fake Ollama and the proxy, so every microsecond
it spends is one they wait for).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RunResult:
    concurrency: int
    requests: int = 0
    errors: int = 0
    lines: int = 0
    seconds: float = 0.0
    ttft: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)  # to the last byte, per request
    max_gap: list[float] = field(default_factory=list)  # the largest gap between two body reads, per request
    marks: list[int] = field(default_factory=list)  # markers (tokens) counted, per request

    def percentile(self, q: float, of: str = "ttft") -> float:
        ordered = sorted(getattr(self, of))
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]

    @property
    def p50(self) -> float:
        return statistics.median(self.ttft)

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds


class _StreamingClient(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses the streamed response as it arrives.

    A protocol rather than a stream reader: the response is parsed in ``data_received``, with
    no task woken per chunk, and the first chunk's arrival is timed when its bytes arrive.
    """

    def __init__(self, marker: bytes) -> None:
        self._marker = marker
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self._done: asyncio.Future[tuple[float, int, float, float]] | None = None
        self._parse = self._head
        self._started = 0.0
        self._first: float | None = None
        self._last = 0.0
        self._gap = 0.0
        self._lines = 0
        self._length = 0  # of the body or of the chunk being read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError(f"connection closed mid-response ({exc})"))

    def request(self, request: bytes) -> asyncio.Future[tuple[float, int, float, float]]:
        """Send ``request``; the future gives (seconds to the first body chunk, markers counted, seconds to the end,
        the largest gap between two body reads)."""
        assert self.transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self._parse = self._head
        self._first = None
        self._gap = 0.0
        self._lines = 0
        self._started = time.perf_counter()
        self.transport.write(request)
        return self._done

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buffer += data
        try:
            while self._parse(now):
                pass
        except (RuntimeError, ValueError) as exc:
            self._finish(exc)

    def _finish(self, error: Exception | None = None) -> None:
        done, self._done = self._done, None
        if done is None or done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            now = time.perf_counter()
            done.set_result(((self._first or now) - self._started, self._lines, now - self._started, self._gap))

    def _body(self, data: bytes, now: float) -> None:
        if self._first is None:
            self._first = now
        elif now - self._last > self._gap:
            self._gap = now - self._last
        self._last = now
        self._lines += data.count(self._marker)

    def _head(self, now: float) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).split(b"\r\n")
        del self._buffer[: end + 4]
        if b" 200 " not in head[0] + b" ":
            raise RuntimeError(f"unexpected status {head[0]!r}")
        framing = None
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                self._length = int(value)
                framing = self._fixed_body
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                framing = self._size_line
        if framing is None:
            raise RuntimeError("a response with neither Content-Length nor chunked framing")
        self._parse = framing
        return True

    def _fixed_body(self, now: float) -> bool:
        if len(self._buffer) < self._length:
            return False
        self._body(bytes(self._buffer[: self._length]), now)
        del self._buffer[: self._length]
        self._parse = self._head
        self._finish()
        return False

    def _size_line(self, now: float) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            return False
        self._length = int(bytes(self._buffer[:end]).split(b";")[0], 16)
        del self._buffer[: end + 2]
        self._parse = self._chunk
        return True

    def _chunk(self, now: float) -> bool:
        if len(self._buffer) < self._length + 2:
            return False
        if self._length == 0:  # the last chunk (no trailers): the response is complete
            del self._buffer[:2]
            self._parse = self._head
            self._finish()
            return False
        self._body(bytes(self._buffer[: self._length]), now)
        del self._buffer[: self._length + 2]
        self._parse = self._size_line
        return True


async def run(
    url: str, path: str, body: dict, concurrency: int, requests_per_worker: int, marker: bytes = b"\n", ramp_s: float = 0.0
) -> RunResult:
    """``concurrency`` keep-alive connections, each sending ``requests_per_worker`` requests in turn.

    ``marker`` is what one streamed token looks like: a newline in NDJSON, ``data: `` in SSE.
    ``ramp_s`` spreads the connections' starts over that many seconds (the i-th starts
    ``i * ramp_s / concurrency`` in), so the run is a steady ``concurrency`` streams from
    the start rather than ``concurrency`` requests landing in the same millisecond.
    """
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    result = RunResult(concurrency)
    loop = asyncio.get_running_loop()

    async def connect() -> _StreamingClient:
        _, protocol = await loop.create_connection(lambda: _StreamingClient(marker), parts.hostname, parts.port)
        return protocol

    async def worker(index: int) -> None:
        await asyncio.sleep(index * ramp_s / concurrency)
        client = await connect()
        try:
            for _ in range(requests_per_worker):
                try:
                    ttft, lines, latency, gap = await client.request(request)
                except (RuntimeError, ConnectionError, ValueError):
                    result.errors += 1
                    if client.transport is not None:
                        client.transport.close()
                    client = await connect()
                    continue
                result.requests += 1
                result.lines += lines
                result.ttft.append(ttft)
                result.latency.append(latency)
                result.max_gap.append(gap)
                result.marks.append(lines)
        finally:
            if client.transport is not None:
                client.transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(index) for index in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def run_measured(*args: Any, **kwargs: Any) -> RunResult:
    """``run`` on a fresh uvloop event loop (asyncio's own loop where uvloop is missing)."""
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(run(*args, **kwargs))
