"""otel_proxy/server_protocol.py in process: a response head leaves with the answer's first bytes, in one write."""

from __future__ import annotations

import asyncio

from otel_proxy.server_protocol import _HeadWithFirstChunk

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_head_and_the_first_chunk_written_in_one_turn_leave_in_one_write():
    async def run() -> list[bytes]:
        transport = Transport()
        wrapped = _HeadWithFirstChunk(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(HEAD)
        assert transport.writes == []  # held for the first chunk
        wrapped.write(b"10\r\n{\"done\":false}\n\r\n")
        wrapped.write(b"0\r\n\r\n")
        await asyncio.sleep(0)
        return transport.writes

    assert asyncio.run(run()) == [HEAD + b"10\r\n{\"done\":false}\n\r\n", b"0\r\n\r\n"]


def test_a_head_alone_leaves_at_the_end_of_the_turn_and_before_a_close():
    async def run() -> tuple[list[bytes], list[bytes], bool]:
        loop = asyncio.get_running_loop()
        alone, closing = Transport(), Transport()
        wrapped = _HeadWithFirstChunk(alone, loop)  # type: ignore[arg-type]
        wrapped.write(HEAD)
        await asyncio.sleep(0)  # Ollama's first chunk is not there yet: the client has the head meanwhile
        later = _HeadWithFirstChunk(closing, loop)  # type: ignore[arg-type]
        later.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        later.close()
        await asyncio.sleep(0)
        return alone.writes, closing.writes, closing.closed

    alone, closing, closed = asyncio.run(run())
    assert alone == [HEAD]
    assert closing == [b"HTTP/1.1 204 No Content\r\n\r\n"] and closed


def test_an_interim_response_and_the_rest_pass_at_once():
    async def run() -> list[bytes]:
        transport = Transport()
        wrapped = _HeadWithFirstChunk(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        written_at_once = list(transport.writes)
        assert not wrapped.is_closing()  # the transport's own methods
        return written_at_once

    assert asyncio.run(run()) == [b"HTTP/1.1 100 Continue\r\n\r\n"]
