"""A lean HTTP/1.1 streaming client for the benchmarks: raw asyncio sockets, keep-alive,
chunked decoding, and the arrival time of the first body chunk. Python clients like httpx
cost more per chunk than the proxy under test; this one stays out of the way.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class RunResult:
    concurrency: int
    requests: int = 0
    errors: int = 0
    lines: int = 0
    seconds: float = 0.0
    ttft: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.ttft)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]

    @property
    def p50(self) -> float:
        return statistics.median(self.ttft)

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds


async def _stream_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, marker: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    writer.write(request)
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"unexpected status {status!r}")
    chunked = False
    length = None
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"content-length":
            length = int(value)
    first = None
    lines = 0
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            data = (await reader.readexactly(size + 2))[:-2]
            if first is None:
                first = time.perf_counter()
            lines += data.count(marker)
    else:
        data = await reader.readexactly(length or 0)
        first = time.perf_counter()
        lines = data.count(marker)
    return (first or time.perf_counter()) - started, lines


async def run(url: str, path: str, body: dict, concurrency: int, requests_per_worker: int, marker: bytes = b"\n") -> RunResult:
    """``concurrency`` keep-alive connections, each sending ``requests_per_worker`` requests in turn.

    ``marker`` is what one streamed token looks like: a newline in NDJSON, ``data: `` in SSE.
    """
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    result = RunResult(concurrency)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            for _ in range(requests_per_worker):
                try:
                    ttft, lines = await _stream_once(reader, writer, request, marker)
                except (RuntimeError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                    result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                    continue
                result.requests += 1
                result.lines += lines
                result.ttft.append(ttft)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result
