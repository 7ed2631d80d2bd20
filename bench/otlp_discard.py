"""An OTLP/HTTP receiver that answers every export with 200 and keeps nothing.

The proxy benchmark points the proxy's OTLP exporters here so that "all telemetry on"
includes encoding and sending every span, at the cost of a receiver that does no work
of its own (a collector would add its own CPU to the shared cores).

    python -m bench.otlp_discard --port 4318
"""

from __future__ import annotations

import argparse
import asyncio

import httptools

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"


class _Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.transport.write(ANSWER)


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Receiver, host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
