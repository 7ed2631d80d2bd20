"""The proxy's HTTP/1.1 server side: uvicorn's httptools protocol, with the bounds an exposed proxy needs.

Nothing a client sends is held without a bound, before or after the key check:
- A request head (its line and headers) is bounded where it is parsed: past ``max_head_bytes`` the client gets a
  431 before more is buffered (uvicorn would buffer every header first). The bytes of a body that are not its data
  (a chunk's size line and extensions, a chunked body's trailer section) count against the same bound, fed to the
  parser a slice at a time, so no field grows past it (the parser builds a field by concatenation: one 128 MiB
  trailer would cost seconds and hundreds of MB).
- A head must arrive within ``header_timeout_s`` of its first byte (or of the connection's opening: a connection
  that sends nothing is closed too), and a body must keep arriving: no ``header_timeout_s`` without a byte of it
  (nginx's ``client_header_timeout`` and ``client_body_timeout``). Between requests, uvicorn's keep-alive timeout.
- Open connections are capped in total and per peer address (Envoy's connection limits): past either, the
  connection gets a 503 and is closed, with one log line a minute while the cap holds.
- Trailers of a chunked body are dropped (uvicorn appends them to the request's headers, so a key sent in a
  trailer would count, and reach Ollama as a header).
- Upgrades (``Upgrade: h2c``, websocket, CONNECT) get a 400: nothing behind the proxy speaks another protocol.
- HTTP/0.9 gets a 400 (uvicorn would wait for headers that never come), whatever precedes its line on the
  connection: empty lines, or another request (one pipelined in the same read as the request before it waits out
  the header timeout, and gets a 408).

Every refusal is in the error shape of the API the path belongs to, and closes the connection without reading on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from otel_proxy import ollama

log = logging.getLogger(__name__)

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}
_HTTP1_REQUEST_LINE = re.compile(rb"[!-~]+ [!-~]+ HTTP/1\.[01]\r?\n")
FEED_SLICE = 8 << 10  # a body's bytes are fed to the parser this many at a time, so its framing is bounded as it grows
CAP_LOG_EVERY_S = 60.0


@dataclass
class ConnectionLimits:
    """The bounds every connection of one server shares, and the count of its open connections."""

    max_head_bytes: int
    header_timeout_s: float
    max_connections: int
    max_connections_per_peer: int
    open: int = 0
    per_peer: dict[str, int] = field(default_factory=dict)
    refused_since_log: int = 0
    logged_at: float = -CAP_LOG_EVERY_S

    def admit(self, peer: str) -> str | None:
        """Counts a new connection in; None, or why it is refused (a cap is reached)."""
        if self.open >= self.max_connections:
            return f"the proxy holds {self.open} connections, its limit (--max-connections)"
        if self.per_peer.get(peer, 0) >= self.max_connections_per_peer:
            return f"{peer} holds {self.per_peer[peer]} connections, the limit for one address (--max-connections-per-peer)"
        self.open += 1
        self.per_peer[peer] = self.per_peer.get(peer, 0) + 1
        return None

    def release(self, peer: str) -> None:
        self.open -= 1
        left = self.per_peer[peer] - 1
        if left:
            self.per_peer[peer] = left
        else:
            del self.per_peer[peer]

    def refused(self, why: str) -> None:
        """One log line a minute while a cap refuses connections, with how many it refused since the last."""
        self.refused_since_log += 1
        now = time.monotonic()
        if now - self.logged_at >= CAP_LOG_EVERY_S:
            log.warning("refusing connections (503): %s; %d refused since the last such line", why, self.refused_since_log)
            self.logged_at, self.refused_since_log = now, 0


class ServerProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._peer: str | None = None  # the address counted against the caps (None: not counted)
        self._in_head = True  # reading a request's line and headers
        self._head_bytes = 0
        self._in_body = False
        self._framing = 0  # a body's bytes fed since its last data: chunk framing, trailers
        self._body_seen = False  # the parser gave body data from the slice just fed
        self._first_line: bytes | None = b""  # a request's first line, until it is checked
        self._target = b""
        self._deadline: asyncio.TimerHandle | None = None  # the head's, or the next body bytes'

    # The connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = self.client[0] if self.client else ""
        why = self._limits.admit(peer)
        if why is not None:
            self._limits.refused(why)
            self._refuse(503, f"{why}; retry later", log_it=False)
            return
        self._peer = peer
        self._arm()  # a connection that sends nothing is closed at the head's deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._peer is not None:
            self._limits.release(self._peer)
            self._peer = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self._limits.header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self._in_body and self.flow.read_paused:
            self._arm()  # the app is not reading (Ollama takes the body slowly): the client is not the one waiting
        elif self._in_body and self.cycle is not None and not self.cycle.response_complete:
            # the request is the app's already: ending its connection ends its body (the forwarder sees the client gone)
            log.info("closed a connection from %s: its body sent nothing for %g s (--header-timeout)", self._peer, self._limits.header_timeout_s)
            self.transport.close()
        elif self._in_head:
            self._refuse(408, f"the request head did not arrive within {self._limits.header_timeout_s:g} s (--header-timeout)")

    # Bytes from the client ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._in_body:
            self._arm()  # a body must keep arriving
            while data and self._in_body:
                piece, data = data[:FEED_SLICE], data[FEED_SLICE:]
                self._body_seen = False
                self._feed(piece)
                if self.transport.is_closing():
                    return
                if self._in_body and not self._body_seen:  # framing, or a trailer, grows: bounded as a head is
                    self._framing += len(piece)
                    if self._framing > self._limits.max_head_bytes:
                        self._refuse(431, f"a chunked body's framing and trailers exceed the limit of {self._limits.max_head_bytes} bytes")
                        return
            if not data:
                return
            # the request ended in this read: what follows is the next one's head
        if self._deadline is None:
            self._arm()  # the first byte of the next request on a kept-alive connection: its head has the same time
        if self._in_head and self._head_bytes + len(data) > self._limits.max_head_bytes:
            # Only a head still unfinished past the limit: the rest of this read may be a body.
            try:
                end = data.index(b"\r\n\r\n")
            except ValueError:
                end = len(data)
            if self._head_bytes + end > self._limits.max_head_bytes:
                self._refuse(431, f"request headers exceed the limit of {self._limits.max_head_bytes} bytes")
                return
        if self._first_line is not None and not self._request_line_is_http1(data):
            self._refuse(400, "only HTTP/1.0 and HTTP/1.1 are served here (HTTP/0.9 and other protocols are not)")
            return
        self._feed(data)
        if self._in_head:
            self._head_bytes += len(data)

    def _request_line_is_http1(self, data: bytes) -> bool:
        """Whether the request line, once whole, is HTTP/1.x (True until it is whole). Empty lines before it are
        passed over, as the parser passes them over (RFC 9112 §2.2)."""
        assert self._first_line is not None
        self._first_line = (self._first_line + data).lstrip(b"\r\n")
        end = self._first_line.find(b"\n")
        if end < 0:
            return True
        line, self._first_line = self._first_line[: end + 1], None
        return _HTTP1_REQUEST_LINE.fullmatch(line) is not None

    def _feed(self, data: bytes) -> None:
        super().data_received(data)

    def _unsupported_upgrade_warning(self) -> None:
        """uvicorn's warning for an upgrade it will not do: on_headers_complete has refused it already."""

    # Parser callbacks ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._in_body = True, False
        self._head_bytes = 0
        self._target = b""
        if self._deadline is None:  # a request pipelined behind another in one read: its head has the same time
            self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # after the head, a header is a chunked body's trailer: dropped
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self.parser.should_upgrade():
            upgrade = next((value for name, value in self.headers if name == b"upgrade"), b"").decode("latin-1")
            self._refuse(400, f"protocol upgrades are not supported (Upgrade: {upgrade or 'CONNECT'}); send plain HTTP/1.1 without Upgrade")
            return
        self._in_body, self._framing = True, 0
        self._arm()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._framing, self._body_seen = 0, True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._first_line = b""  # the next request on this connection is checked too
        self._disarm()  # until its first byte: the keep-alive timeout runs between requests
        super().on_message_complete()

    # Refusals ---------------------------------------------------------------------------------------

    def _refuse(self, status: int, message: str, log_it: bool = True) -> None:
        path = self._target.split(b"?", 1)[0].decode("latin-1")
        body = ollama.error_body(ollama.route_of(path), status, f"otel-proxy: {message}")
        if log_it:
            log.info("refused a request from %s: %s", self.client[0] if self.client else "?", message)
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete and not self._in_head:
            self.transport.close()  # the app has answered or is answering: nothing more can be written cleanly
        else:
            self.transport.write(
                b"HTTP/1.1 %d %b\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%b"
                % (status, _REASONS[status], len(body), body)
            )
            self.transport.close()
        self._in_head = self._in_body = False
