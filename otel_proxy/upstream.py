"""A lean HTTP/1.1 transport for httpx, for the one upstream the proxy talks to.

httpx's default transport (httpcore over anyio) costs more per request and per chunk
than everything else in the proxy together: its pool polls every idle connection on
every request, and each chunk climbs several layers of streams (see
docs/benchmarks.md). This transport keeps httpx's API, and with it the
opentelemetry-instrumentation-httpx client span, but speaks HTTP/1.1 itself over
asyncio streams, parses responses with httptools (llhttp, the parser Node.js uses),
and keeps idle keep-alive connections in a plain stack.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import httptools
import httpx

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


class _Response:
    """Parser callbacks for one response: status, headers, body pieces, completion.

    Interim responses (1xx but 101, RFC 9110 §15.2) are read past: their headers are
    dropped and the parser goes on to the final response on the same connection. Anything
    the upstream sends after the final response is not ours to read: such a connection is
    never reused, or the next request would get those bytes as its answer.
    """

    __slots__ = ("headers", "reason", "body", "headers_done", "complete", "keep_alive", "parser", "interim", "unsolicited")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""  # the status line's reason phrase, as httpcore hands it on
        self.body: list[bytes] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.parser: Any = None
        self.interim = False  # the message being parsed is an interim response
        self.unsolicited = False  # bytes came after the final response

    def on_message_begin(self) -> None:
        if self.complete:
            self.unsolicited = True

    def on_status(self, reason: bytes) -> None:
        if not self.headers_done:
            self.reason = bytes(reason)  # an interim answer's is replaced by the final one's

    def on_header(self, name: bytes, value: bytes) -> None:
        # After the head, llhttp reports a chunked body's trailer fields here too: httpcore drops them, and so does this.
        if not self.headers_done:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.interim = True
            self.headers.clear()
            return
        self.headers_done = True
        # llhttp forgets this once the message is complete, so ask while the headers are fresh.
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.body.append(bytes(body))

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
        else:
            self.complete = True


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        """Open, and nothing arrived while idle: httpcore drops a readable idle connection, and so does this.

        ``StreamReader._buffer`` (CPython 3.11-3.13): the bytes read from the socket and not yet taken.
        tests/proxy/test_upstream.py fails if it stops saying so.
        """
        return not self.writer.is_closing() and not self.reader.at_eof() and not self.reader._buffer

    def close(self) -> None:
        self.writer.close()


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None, float | None]:
    timeout = request.extensions.get("timeout", {})
    return timeout.get("connect"), timeout.get("read"), timeout.get("write")


class _IdleWatchdog:
    """The idle timeout between chunks, for the price of a flag per chunk.

    ``asyncio.timeout`` around every read re-arms a timer each time; this arms one timer
    and, when it fires, cancels the reading task only if it has been waiting on the
    upstream for the whole timeout (not while it waits on a slow client).
    """

    __slots__ = ("_timeout", "_loop", "_task", "_since", "_handle", "_expired", "_reading")

    def __init__(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._since = self._loop.time()
        self._expired = False
        self._reading = False
        self._handle = None if timeout is None else self._loop.call_at(self._since + timeout, self._check)

    @property
    def reading(self) -> bool:
        return self._reading

    @reading.setter
    def reading(self, value: bool) -> None:
        if value and not self._reading:
            self._since = self._loop.time()
        self._reading = value

    def _check(self) -> None:
        assert self._timeout is not None
        now = self._loop.time()
        if self._reading and now - self._since >= self._timeout and self._task is not None:
            self._expired = True
            self._task.cancel()
            return
        start = self._since if self._reading else now
        self._handle = self._loop.call_at(start + self._timeout, self._check)

    def expired(self) -> bool:
        if self._expired and self._task is not None:
            self._task.uncancel()
        return self._expired

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


class _BodyStream(httpx.AsyncByteStream):
    """The response body as it arrives; hands the connection back once it is all read."""

    def __init__(self, transport: "UpstreamTransport", connection: _Connection, parser: Any, state: _Response, read_timeout: float | None, until_eof: bool) -> None:
        self._transport = transport
        self._connection = connection
        self._parser = parser
        self._state = state
        self._read_timeout = read_timeout
        self._until_eof = until_eof

    async def __aiter__(self) -> AsyncIterator[bytes]:
        state = self._state
        if state.body:
            pending, state.body = state.body, []
            for piece in pending:
                yield piece
        if state.complete:
            return
        watchdog = _IdleWatchdog(self._read_timeout)
        reader = self._connection.reader
        parser = self._parser
        try:
            while not state.complete:
                watchdog.reading = True
                try:
                    data = await reader.read(READ_SIZE)
                except asyncio.CancelledError:
                    if watchdog.expired():
                        raise httpx.ReadTimeout(f"no data from upstream for {self._read_timeout} s") from None
                    raise
                except OSError as exc:
                    raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
                watchdog.reading = False
                if not data:
                    if self._until_eof:
                        state.complete = True  # a body delimited by the end of the connection
                        break
                    raise httpx.RemoteProtocolError("upstream closed the connection before the response was complete")
                try:
                    parser.feed_data(data)
                except httptools.HttpParserError as exc:
                    raise httpx.RemoteProtocolError(f"upstream sent an invalid response: {exc}") from exc
                pending, state.body = state.body, []
                for piece in pending:
                    yield piece
        finally:
            watchdog.stop()

    async def aclose(self) -> None:
        state = self._state
        if state.complete and not self._until_eof and state.keep_alive and not state.unsolicited:
            self._transport._release(self._connection)
        else:
            self._connection.close()


class UpstreamTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to one plain-HTTP upstream, with a stack of idle keep-alive connections.

    ``after_send`` is called each time a request has been written, while Ollama works on it.
    """

    def __init__(self, max_idle: int = 256, after_send: Callable[[], None] | None = None) -> None:
        self._idle: deque[_Connection] = deque()
        self._max_idle = max_idle
        self._after_send = after_send

    async def _connect(self, request: httpx.Request, timeout: float | None) -> _Connection:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"the upstream must be plain http://, not {url.scheme}://")
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(url.host, url.port or 80, limit=READ_SIZE * 4)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection to {url.host}:{url.port} within {timeout} s") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"{exc.strerror or exc} ({url.host}:{url.port})") from exc
        return _Connection(reader, writer)

    def _release(self, connection: _Connection) -> None:
        if len(self._idle) < self._max_idle and connection.usable():
            self._idle.append(connection)
        else:
            connection.close()

    def _reuse(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        connect_timeout, read_timeout, write_timeout = _timeouts(request)
        replayable = isinstance(request.stream, httpx.ByteStream)
        connection = self._reuse()
        reused = connection is not None
        if connection is None:
            connection = await self._connect(request, connect_timeout)
        try:
            return await self._exchange(connection, request, read_timeout, write_timeout)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            connection.close()
            if not (reused and replayable):
                raise
        except BaseException:
            connection.close()
            raise
        # A kept-alive connection the upstream had already closed: once more on a new one.
        connection = await self._connect(request, connect_timeout)
        try:
            return await self._exchange(connection, request, read_timeout, write_timeout)
        except BaseException:
            connection.close()
            raise

    async def _exchange(self, connection: _Connection, request: httpx.Request, read_timeout: float | None, write_timeout: float | None) -> httpx.Response:
        try:
            await self._send_request(connection, request, write_timeout)
        except httpx.WriteError:
            # As httpcore does (http11.py handle_async_request): a server may stop taking a body and answer
            # (a 413, say) before closing, so what it sent is read; with nothing sent, the read says why.
            pass
        if self._after_send is not None:
            self._after_send()
        state = _Response()
        parser = state.parser = httptools.HttpResponseParser(state)
        reader = connection.reader
        while not state.headers_done:
            try:
                async with asyncio.timeout(read_timeout):
                    data = await reader.read(READ_SIZE)
            except TimeoutError as exc:
                connection.close()
                raise httpx.ReadTimeout(f"no answer from upstream within {read_timeout} s") from exc
            except OSError as exc:
                raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
            if not data:
                raise httpx.RemoteProtocolError("upstream closed the connection without sending a response")
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                state.headers_done = True  # a 101: checked below
            except httptools.HttpParserError as exc:
                raise httpx.RemoteProtocolError(f"upstream sent an invalid response: {exc}") from exc

        status = parser.get_status_code()
        if status == 101:
            # The proxy forwards no Upgrade (hop-by-hop), so a switch of protocols is nothing it asked for.
            raise httpx.RemoteProtocolError("upstream switched protocols (101) though no upgrade was asked for")
        bodyless = request.method == "HEAD" or status in (204, 304)
        if bodyless:
            state.complete = True
            state.body.clear()
        names = {name.lower() for name, _ in state.headers}
        until_eof = not bodyless and b"content-length" not in names and b"transfer-encoding" not in names
        stream = _BodyStream(self, connection, parser, state, read_timeout, until_eof)
        return httpx.Response(
            status,
            headers=state.headers,
            stream=stream,
            extensions={"http_version": b"HTTP/" + parser.get_http_version().encode(), "reason_phrase": state.reason},
        )

    async def _send_request(self, connection: _Connection, request: httpx.Request, write_timeout: float | None) -> None:
        target = request.url.raw_path
        head = [request.method.encode(), b" ", target, b" HTTP/1.1\r\n"]
        chunked = False
        for name, value in request.headers.raw:
            head += (name, b": ", value, b"\r\n")
            if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
        head.append(b"\r\n")
        writer = connection.writer

        def write(data: bytes) -> None:
            # Ollama may close the connection while the body is on its way (a dropped upload): asyncio's transport
            # would drop the bytes in silence and uvloop's raise RuntimeError; httpcore raises WriteError, and so does this.
            if writer.transport.is_closing():
                raise httpx.WriteError("Connection lost")
            writer.write(data)

        try:
            if isinstance(request.stream, httpx.ByteStream):
                body = b"".join([part async for part in request.stream])
                write(b"".join(head) + body)
                if not writer.transport.get_write_buffer_size() and not writer.transport.is_closing():
                    return  # the kernel took it all: nothing to wait for
            else:
                write(b"".join(head))
                async for part in request.stream:
                    if not part:
                        continue
                    write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
                    async with asyncio.timeout(write_timeout):
                        await writer.drain()
                if chunked:
                    write(b"0\r\n\r\n")
            async with asyncio.timeout(write_timeout):
                await writer.drain()
        except TimeoutError as exc:
            connection.close()
            raise httpx.WriteTimeout(f"upstream did not take the request body within {write_timeout} s") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()
