"""otel_proxy/upstream.py on its own: what an idle kept-alive connection may hold, against httpcore."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from otel_proxy.upstream import UpstreamTransport

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b"


async def _serve_with_stray_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each request with its own target; after the first, sends a stray answer while the connection is idle."""
    first = True
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ")[1]
        writer.write(ANSWER % (len(target), target))
        if first:
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(ANSWER % (5, b"stray"))
            first = False
        await writer.drain()


@pytest.mark.parametrize("transport_kind", ["proxy", "httpx"])
def test_bytes_that_arrive_on_an_idle_connection_never_become_the_next_answer(transport_kind):
    async def main() -> list[bytes]:
        server = await asyncio.start_server(_serve_with_stray_bytes, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport: httpx.AsyncBaseTransport = UpstreamTransport() if transport_kind == "proxy" else httpx.AsyncHTTPTransport()
        bodies = []
        async with server, httpx.AsyncClient(transport=transport) as client:
            for target in ("/one", "/two", "/three"):
                bodies.append((await client.get(f"http://127.0.0.1:{port}{target}")).content)
                await asyncio.sleep(0.1)  # the stray answer lands while the connection sits idle
        return bodies

    assert asyncio.run(main()) == [b"/one", b"/two", b"/three"]
