"""The proxy's HTTP/1.1 server side: uvicorn's httptools protocol, with the rules an exposed proxy needs.

- Request heads are bounded where they are parsed: past ``max_head_bytes`` the client gets a
  431 before more is buffered (uvicorn would buffer every header first).
- Trailers of a chunked body are dropped (uvicorn appends them to the request's headers,
  so a key sent in a trailer would count, and reach Ollama as a header).
- Upgrades (``Upgrade: h2c``, websocket, CONNECT) get a 400: nothing behind the proxy speaks
  another protocol, and uvicorn would serve the request, then drop what follows.
- HTTP/0.9 gets a 400 (uvicorn would wait for headers that never come).

Every refusal is in the error shape of the API the path belongs to, and closes the connection.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from otel_proxy import ollama

log = logging.getLogger(__name__)

_REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}
_HTTP1_REQUEST_LINE = re.compile(rb"[!-~]+ [!-~]+ HTTP/1\.[01]\r?\n")


class ServerProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, max_head_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head_bytes = max_head_bytes
        self._in_head = True  # reading a request's line and headers
        self._head_bytes = 0
        self._first_line: bytes | None = b""  # the connection's first request line, until it is checked
        self._target = b""

    def data_received(self, data: bytes) -> None:
        if self._in_head and self._head_bytes + len(data) > self._max_head_bytes:
            # Only a head still unfinished past the limit: the rest of this read may be a body.
            try:
                end = data.index(b"\r\n\r\n")
            except ValueError:
                end = len(data)
            if self._head_bytes + end > self._max_head_bytes:
                self._refuse(431, f"request headers exceed the limit of {self._max_head_bytes} bytes")
                return
        if self._first_line is not None:
            self._first_line += data
            end = self._first_line.find(b"\n")
            if end >= 0:
                line, self._first_line = self._first_line[: end + 1], None
                if not _HTTP1_REQUEST_LINE.fullmatch(line.lstrip(b"\r\n")) and line.strip():
                    self._refuse(400, "only HTTP/1.0 and HTTP/1.1 are served here (HTTP/0.9 and other protocols are not)")
                    return
        super().data_received(data)
        if self._in_head:
            self._head_bytes += len(data)

    def _unsupported_upgrade_warning(self) -> None:
        """uvicorn's warning for an upgrade it will not do: on_headers_complete has refused it already."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._target = b""

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
        super().on_headers_complete()

    def _refuse(self, status: int, message: str) -> None:
        path = self._target.split(b"?", 1)[0].decode("latin-1")
        body = ollama.error_body(ollama.route_of(path), status, f"otel-proxy: {message}")
        log.info("refused a request from %s: %s", self.client[0] if self.client else "?", message)
        self.transport.write(
            b"HTTP/1.1 %d %b\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%b"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()
        self._in_head = False
