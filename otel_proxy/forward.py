"""The streaming pass-through: bytes from the client to Ollama and back, untouched.

The hot path is ``_relay``: each chunk read from Ollama is handed to the watcher (a
reference kept) and sent to the client at once. Everything else happens once per
request: learning the model from the body's first bytes, opening the upstream
request, and listening for the client going away so the upstream call is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx
from opentelemetry import context as otel_context

from otel_proxy import ollama
from otel_proxy.clients import carries_a_key, presented_key
from otel_proxy.config import ProxySettings
from otel_proxy.observer import CLIENT_DISCONNECTED, INVALID_TARGET, RATE_LIMITED, UNAUTHORIZED, ObserverContext, RequestObserver

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

URL_CACHE_SIZE = 1024

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

_ERROR_TYPES: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ConnectTimeout, "connect_timeout"),
    (httpx.ConnectError, "connect_error"),
    (httpx.ReadTimeout, "idle_timeout"),
    (httpx.PoolTimeout, "pool_timeout"),
    (httpx.WriteTimeout, "write_timeout"),
    (httpx.RemoteProtocolError, "upstream_closed"),
    (httpx.ReadError, "upstream_reset"),
    (httpx.WriteError, "upstream_write_error"),
)


def error_type_of(exc: Exception) -> str:
    for kind, name in _ERROR_TYPES:
        if isinstance(exc, kind):
            return name
    return type(exc).__name__


class ClientDisconnected(Exception):
    """The client went away while its request body was still being read."""


class UpstreamAborted(Exception):
    """Ollama failed after the response started: the client's connection is closed unfinished.

    The server's log filter knows this one and drops uvicorn's traceback for it; the
    forwarder has already logged the cause in one line.
    """


def _end_to_end(headers: list[tuple[bytes, bytes]], drop: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    named_in_connection = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    return [
        (name, value)
        for name, value in headers
        if (lowered := name.lower()) not in drop and lowered not in named_in_connection
    ]


# Expect: the proxy answers "100 Continue" itself (uvicorn writes it when the forwarder first
# reads the body) and sends Ollama the body at once, so Ollama has nothing to continue.
_REQUEST_DROP = HOP_BY_HOP | {b"host", b"content-length", b"expect"}


def request_headers(raw: list[tuple[bytes, bytes]], host: bytes, body: bytes | None) -> list[tuple[bytes, bytes]]:
    """The client's end-to-end headers for Ollama, with Host and the body's framing.

    ``body`` is the whole body when the proxy has read all of it (sent with a
    Content-Length), or None when the rest is still coming: then the client's
    Content-Length stands, or the body goes chunked.
    """
    kept = _end_to_end(raw, _REQUEST_DROP)
    kept.append((b"host", host))
    length = [value for name, value in raw if name.lower() == b"content-length"]
    chunked = any(name.lower() == b"transfer-encoding" for name, _ in raw)
    if body is not None:
        if body or (length and not chunked):
            kept.append((b"content-length", b"%d" % len(body)))
    elif length and not chunked:
        kept.append((b"content-length", length[0]))
    else:
        kept.append((b"transfer-encoding", b"chunked"))
    return kept


def response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return _end_to_end(raw, HOP_BY_HOP)


async def _next_part(receive: Receive) -> tuple[bytes, bool]:
    """One ASGI message of the request body: its bytes, and whether more follow."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    return message.get("body", b""), message.get("more_body", False)


async def _body_parts(receive: Receive) -> AsyncIterator[bytes]:
    """The rest of the request body as the client sends it, one ASGI message at a time."""
    more = True
    while more:
        part, more = await _next_part(receive)
        yield part


async def _read_prefix(receive: Receive, limit: int) -> tuple[bytes, AsyncIterator[bytes] | None]:
    """Up to about ``limit`` bytes of the body, and the rest still to come (None when that was all).

    A generation's body is one small message: that case costs one ``receive``.
    """
    first, more = await _next_part(receive)
    if not more:
        return first, None
    read = [first]
    size = len(first)
    parts = _body_parts(receive)
    async for part in parts:
        read.append(part)
        size += len(part)
        if size >= limit:
            return b"".join(read), parts
    return b"".join(read), None


class _RestOfBody(httpx.AsyncByteStream):
    """The prefix already read, then the rest of the body as the client sends it."""

    def __init__(self, prefix: bytes, parts: AsyncIterator[bytes], body_done: asyncio.Event, observer: RequestObserver) -> None:
        self._prefix = prefix
        self._parts = parts
        self._body_done = body_done
        self._observer = observer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._prefix
        kept = self._observer.body_parts  # the observer fingerprints a generation's body, once it is all in
        async for part in self._parts:
            if part:
                if kept is not None:
                    kept.append(part)
                yield part
        self._body_done.set()
        if kept is not None:
            self._observer.body_read()


async def _watch_for_disconnect(receive: Receive, body_done: asyncio.Event, on_disconnect: Callable[[], None]) -> None:
    await body_done.wait()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            on_disconnect()
            return


async def send_error(send: Send, observer: RequestObserver, status: int, message: str, refused: bool = False) -> None:
    """The proxy's own answer, in the error shape of the API called (otel_proxy/ollama.py error_body). A ``refused``
    request's connection closes after it: nothing more of it is read (its body, a chunked body's trailers)."""
    observer.response_started(status, "application/json")
    body = ollama.error_body(observer.route, status, message)
    headers = [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")] if refused else headers})
    await send({"type": "http.response.body", "body": body})


class Forwarder:
    """The ASGI app for every path that is Ollama's.

    It calls the (instrumented) transport directly: httpx's client layers (auth, redirects,
    cookies, event hooks) do nothing a transparent proxy wants and cost a fifth of its time.
    """

    def __init__(self, settings: ProxySettings, transport: httpx.AsyncBaseTransport, observers: ObserverContext) -> None:
        self._settings = settings
        self._transport = transport
        self._observers = observers
        self._upstream = settings.upstream.rstrip("/")
        self._host = httpx.URL(self._upstream).netloc
        self._timeout = settings.timeout.as_dict()
        self._urls: dict[bytes, httpx.URL] = {}
        self._in_flight_per_key: dict[str, int] = {}

    def _url(self, target: bytes) -> httpx.URL:
        """Ollama's URL for a request target, parsed once: httpx's parser costs more than the rest of a request."""
        url = self._urls.get(target)
        if url is None:
            url = httpx.URL(self._upstream + target.decode("latin-1"))
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[target] = url
        return url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = scope["raw_path"]
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        try:
            url: httpx.URL | None = self._url(target)
        except httpx.InvalidURL as exc:
            url, problem = None, exc
        # Routed and recorded on the path Ollama will see: httpx removes dot segments (/x/../api/generate).
        observer = RequestObserver(self._observers, scope, url.path if url is not None else scope["path"])
        try:
            # The key first, whatever the target: a stranger's request is refused before anything else is looked at.
            if self._settings.api_keys is not None and not await self._authenticated(scope, send, observer):
                return
            if url is None:
                observer.failed(INVALID_TARGET, f"otel-proxy: the request target is not a valid URL path ({problem})")
                await send_error(send, observer, 400, f"otel-proxy: the request target is not a valid URL path ({problem})", refused=True)
            else:
                await self._admit(scope, receive, send, observer, url)
        except ClientDisconnected:
            observer.failed(CLIENT_DISCONNECTED, "the client disconnected before its request was sent")
        finally:
            observer.finish()

    async def _authenticated(self, scope: Scope, send: Send, observer: RequestObserver) -> bool:
        """With keys: whether the request presents a valid one (its name then labels it); else a 401, and the
        connection closes unread."""
        keys = self._settings.api_keys
        assert keys is not None
        key, problem = presented_key(scope["headers"])
        name = keys.check(key) if key is not None and problem is None else None
        if name is None:
            # Never forwarded, never logged with the key; answered in the shape of the API called.
            message = f"otel-proxy: {problem or ('the API key is not valid' if key is not None else 'an API key is required')}"
            observer.failed(UNAUTHORIZED, message)
            await send_error(send, observer, 401, message + " (Authorization: Bearer <key>, or x-api-key: <key>)", refused=True)
            return False
        observer.key_name = name
        return True

    async def _admit(self, scope: Scope, receive: Receive, send: Send, observer: RequestObserver, url: httpx.URL) -> None:
        """No more than --max-concurrent-per-key of each key's requests at once."""
        name = observer.key_name
        if name is None:
            await self._forward(scope, receive, send, observer, url)
            return
        limit = self._settings.max_concurrent_per_key
        in_flight = self._in_flight_per_key.get(name, 0)
        if limit and in_flight >= limit:
            message = f"otel-proxy: the key {name!r} has {in_flight} requests in flight, its limit (--max-concurrent-per-key); retry when one ends"
            observer.failed(RATE_LIMITED, message)
            await send_error(send, observer, 429, message, refused=True)
            return
        self._in_flight_per_key[name] = in_flight + 1
        try:
            await self._forward(scope, receive, send, observer, url)
        finally:
            left = self._in_flight_per_key[name] - 1
            if left:
                self._in_flight_per_key[name] = left
            else:
                del self._in_flight_per_key[name]

    async def _forward(self, scope: Scope, receive: Receive, send: Send, observer: RequestObserver, url: httpx.URL) -> None:
        prefix, rest = await _read_prefix(receive, self._settings.body_prefix_bytes)
        observer.learn_request(prefix, rest is None)
        body_done = asyncio.Event()
        stream: httpx.AsyncByteStream
        if rest is None:
            body_done.set()
            stream = httpx.ByteStream(prefix)
        else:
            stream = _RestOfBody(prefix, rest, body_done, observer)
        raw_headers = scope["headers"]
        if self._settings.api_keys is not None:  # the key stays with the proxy
            raw_headers = [(name, value) for name, value in raw_headers if not carries_a_key(name)]
        headers = request_headers(raw_headers, self._host, prefix if rest is None else None)
        # stream= rather than content=: httpx would re-parse the URL and re-derive the framing set above.
        request = httpx.Request(scope["method"], url, headers=headers, stream=stream, extensions={"timeout": self._timeout})

        # Listening for the client going away starts now, with the request on its way: a client that hangs up while
        # Ollama loads or reads the prompt frees its key's slot, and its request to Ollama is cancelled (the connection
        # closed: Ollama cancels work whose client went away, server/routes.go), as it is mid-answer.
        forwarding = asyncio.current_task()
        assert forwarding is not None
        gone = False

        def client_gone() -> None:
            nonlocal gone
            gone = True
            forwarding.cancel()

        listener = asyncio.create_task(_watch_for_disconnect(receive, body_done, client_gone))
        try:
            await self._exchange(scope, request, send, observer)
        except asyncio.CancelledError:
            if not gone:
                raise
            forwarding.uncancel()
            if observer.first_chunk_at is None:  # Ollama loading, or reading the prompt
                observer.failed(CLIENT_DISCONNECTED, "the client disconnected before Ollama's answer began; the request to Ollama was cancelled")
            elif not observer.answered_whole():  # else the whole answer had passed: an SSE client stops reading at the final event
                observer.failed(CLIENT_DISCONNECTED, "the client disconnected mid-response; the upstream request was cancelled")
        finally:
            listener.cancel()

    async def _exchange(self, scope: Scope, request: httpx.Request, send: Send, observer: RequestObserver) -> None:
        """The request to Ollama, and its answer relayed."""
        token = otel_context.attach(observer.upstream_context())
        observer.handed_on()
        try:
            upstream = await self._transport.handle_async_request(request)
            observer.answer_arrived()
        except httpx.HTTPError as exc:
            error_type = error_type_of(exc)
            message = f"otel-proxy: Ollama at {self._upstream} did not answer ({error_type}: {exc or type(exc).__name__})"
            log.warning("%s %s: %s", scope["method"], scope["path"], message)
            observer.failed(error_type, message)
            await send_error(send, observer, 504 if isinstance(exc, httpx.TimeoutException) else 502, message)
            return
        finally:
            otel_context.detach(token)
        try:
            await self._relay(upstream, send, observer)
        finally:
            await upstream.aclose()

    async def _relay(self, upstream: httpx.Response, send: Send, observer: RequestObserver) -> None:
        """The hot path: each chunk from Ollama to the watcher (a reference kept) and to the client at once."""
        observer.response_started(upstream.status_code, upstream.headers.get("content-type", ""))
        headers = response_headers(upstream.headers.raw)
        added_s = observer.answer_head()
        if self._settings.server_timing:  # the proxy's own time so far, as LiteLLM's x-litellm-overhead-duration-ms gives its
            headers.append((b"server-timing", b"otel-proxy;dur=%.3f;desc=\"added by the proxy\"" % (added_s * 1000)))
        await send({"type": "http.response.start", "status": upstream.status_code, "headers": headers})
        watcher = observer.watcher
        try:
            # The transport's own stream: Response.aiter_raw would add two layers to every chunk.
            chunks = aiter(cast(httpx.AsyncByteStream, upstream.stream))
            first = await anext(chunks, None)
            if first is not None:
                observer.first_chunk()
                watcher.feed(first)
                await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in chunks:
                watcher.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError as exc:
            error_type = error_type_of(exc)
            message = f"otel-proxy: Ollama at {self._upstream} failed mid-response ({error_type}: {exc})"
            log.warning("%s", message)
            observer.failed(error_type, message)
            raise UpstreamAborted(message) from exc
