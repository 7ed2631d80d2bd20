"""A client that writes exact HTTP/1.1 bytes and reads answers with h11, for what httpx will not send.

Each answer is an ``Answer``: the status, the headers (minus Date, which no two runs share),
the body as the client received it, whether it arrived whole, and the interim responses
before it. Chunk boundaries are not part of it: they are TCP's, not the server's.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import h11

READ_SIZE = 65536


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    complete: bool
    interim: list[int] = field(default_factory=list)


class RawConnection:
    """One client connection; ``send`` writes bytes as given, ``answer`` reads one response."""

    def __init__(self, port: int, timeout: float = 10.0, host: str = "127.0.0.1", source: str | None = None) -> None:
        """``source``: the local address to connect from (another loopback address, 127.0.0.2, is another peer)."""
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None)
        self.parser = h11.Connection(h11.CLIENT)
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _event(self) -> object:
        while True:
            event = self.parser.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = self.sock.recv(READ_SIZE)
            except ConnectionResetError:
                data = b""  # the server closed the connection (with unread data: a reset)
            except TimeoutError:  # the server neither answered nor closed: a hang, never taken for a clean close
                raise AssertionError(f"no answer and no close within {self.sock.gettimeout()} s") from None
            if not data:
                self.closed = True
            self.parser.receive_data(data)

    def interim(self) -> int:
        """The status of the interim response a request sent with ``Expect: 100-continue`` waits for."""
        # h11 parses responses only for requests it was told of; the body's framing is ours, not its.
        self.parser.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("transfer-encoding", "chunked")]))
        event = self._event()
        assert isinstance(event, h11.InformationalResponse), event
        return event.status_code

    def answer(self, head_request: bool = False) -> Answer:
        """The next response; ``head_request`` when it answers a HEAD (h11 must know to expect no body)."""
        if self.parser.our_state is h11.IDLE:
            self.parser.send(h11.Request(method="HEAD" if head_request else "GET", target="/", headers=[("host", "x")]))
        if self.parser.our_state is h11.SEND_BODY:
            self.parser.send(h11.EndOfMessage())
        interim: list[int] = []
        body = b""
        response = None
        try:
            while True:
                event = self._event()
                if isinstance(event, h11.InformationalResponse):
                    interim.append(event.status_code)
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    complete = isinstance(event, h11.EndOfMessage)
                    break
        except h11.RemoteProtocolError:
            complete = False
        if response is None:
            return Answer(0, [], body, False, interim)
        headers = [(name, value) for name, value in response.headers.raw_items() if name.lower() != b"date"]
        if complete and self.parser.our_state is h11.DONE and self.parser.their_state is h11.DONE:
            try:
                self.parser.start_next_cycle()
            except h11.LocalProtocolError:
                pass
        return Answer(response.status_code, headers, body, complete, interim)

    def until_closed(self) -> tuple[bytes, float]:
        """Everything the server sends until it closes the connection, and the seconds that took; an AssertionError
        if it neither closes nor sends within the socket's timeout."""
        started, received = time.monotonic(), b""
        while True:
            try:
                data = self.sock.recv(READ_SIZE)
            except ConnectionResetError:
                data = b""
            except TimeoutError:
                raise AssertionError(f"the connection is still open after {time.monotonic() - started:.1f} s") from None
            if not data:
                return received, time.monotonic() - started
            received += data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request(method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> bytes:
    """The bytes of one request with a Content-Length body (or none), Host first."""
    lines = [f"{method} {target} HTTP/1.1", "Host: upstream"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int = 65536) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)) + b"0\r\n\r\n"
