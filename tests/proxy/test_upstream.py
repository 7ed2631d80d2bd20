"""otel_proxy/upstream.py in process, against httpcore (httpx's own transport), case by case.

Each case is a scripted upstream on a real socket (an asyncio server in the test's loop) and a list of requests.
Both transports run the same case, each against a fresh server, and must give the same outcome: for each request
its status, its headers as sent (names as spelled, in order), its body, or the class of the error it raised; and
the bytes the server received and the number of connections it accepted (what was reused). Where the two part on
purpose, the case says so and what the proxy's transport does instead; the message each error carries (the
proxy puts it in the client's answer) is asserted exactly for the proxy's transport.

The subprocess tests (tests/e2e/proxy/test_transport_conformance.py against Go's net/http, tests/e2e/proxy/test_upstream_faults.py)
check the same transport end to end; these run in the test process, so `make mutation` can see them.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from otel_proxy import upstream
from otel_proxy.upstream import UpstreamTransport

# The timeout cases wait 0.5 s on the upstream and stall it for 1 s or more; every other case has room to spare, so a
# busy machine never turns an answer into a timeout
TIMEOUT = httpx.Timeout(connect=1.0, read=0.5, write=0.5, pool=1.0)
ROOMY = httpx.Timeout(10.0)
TRANSPORTS = ("proxy", "httpcore")


@dataclass
class Upstream:
    """What the server saw: the request bytes per connection, in the order they came."""

    received: list[bytearray] = field(default_factory=list)
    port: int = 0
    versions: list[tuple[str, str]] = field(default_factory=list)  # the protocol and reason phrase httpx read from each answer


class Conn:
    """One accepted connection, as a script drives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: bytearray) -> None:
        self.reader, self.writer, self.log = reader, writer, log

    async def request(self) -> bytes | None:
        """One whole request (head, and its body by Content-Length or chunked); None at the end of the stream."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        body = b""
        lowered = head.lower()
        if b"transfer-encoding: chunked" in lowered:
            while not body.endswith(b"0\r\n\r\n"):
                body += await self.reader.readuntil(b"\r\n")
        elif b"content-length:" in lowered:
            length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
            if b"expect: 100-continue" not in lowered:
                body = await self.reader.readexactly(length)
        self.log += head + body
        return head + body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Script = Callable[[Conn], Awaitable[None]]


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + b"".join(h + b"\r\n" for h in extra) + b"Content-Length: %d\r\n\r\n%b" % (len(body), body)


def chunked(*pieces: bytes, trailer: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n" + trailer + b"\r\n"


def answering(*answers: bytes, then: str = "serve") -> Script:
    """Each request on a connection gets the next answer; after the last, the connection is kept ('serve'),
    closed ('close') or reset ('reset')."""

    async def script(conn: Conn) -> None:
        if not answers and await conn.request() is None:
            return
        for answer in answers:
            if await conn.request() is None:
                return
            await conn.send(answer)
        if then == "close":
            conn.close()
        elif then == "reset":
            conn.reset()
        else:
            while await conn.request() is not None:
                await conn.send(answers[-1])

    return script


async def _upload(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


Request = tuple  # (method, path) or (method, path, body bytes) or (method, path, [parts], headers)


async def run_case(kind: str, script: Script, requests: list[Request], *, sock: socket.socket | None = None, pause: float = 0.0,
                   timeout: httpx.Timeout = ROOMY, **transport_args) -> tuple[list, Upstream, list[str]]:
    seen = Upstream()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.received.append(bytearray())
        try:
            await script(Conn(reader, writer, seen.received[-1]))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()  # the script is done with it: a client still waiting learns so, and no case hangs

    if sock is None:
        server = await asyncio.start_server(accept, "127.0.0.1", 0)
    else:
        server = await asyncio.start_server(accept, sock=sock)
    port = seen.port = server.sockets[0].getsockname()[1]
    if kind == "proxy":
        transport: httpx.AsyncBaseTransport = UpstreamTransport(**transport_args)
    else:
        transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=transport_args.get("max_idle", 256)))
    outcomes: list = []
    messages: list[str] = []
    versions = seen.versions
    async with server, httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        for method, path, *rest in requests:
            body = rest[0] if rest else None
            headers = rest[1] if len(rest) > 1 else None
            content = _upload(body) if isinstance(body, list) else body
            try:
                async with client.stream(method, f"http://127.0.0.1:{port}{path}", content=content, headers=headers) as answer:
                    data = b"".join([piece async for piece in answer.aiter_raw()])
                    outcomes.append((answer.status_code, list(answer.headers.raw), data))
                    versions.append((answer.http_version, answer.reason_phrase))
            except httpx.HTTPError as exc:
                outcomes.append(type(exc).__name__)
                messages.append(str(exc))
            await asyncio.sleep(pause)
        await asyncio.sleep(0.05)  # the server's last reads land
    server.close()
    return outcomes, seen, messages


def both(script_factory: Callable[[], Script], requests: list[Request], **kwargs) -> tuple[tuple, tuple]:
    results, versions = [], []
    for kind in TRANSPORTS:
        outcomes, seen, messages = asyncio.run(run_case(kind, script_factory(), requests, **kwargs))
        assert all(reason for _, reason in seen.versions), seen.versions
        port = b"127.0.0.1:%d" % seen.port
        results.append((outcomes, [bytes(r).replace(port, b"127.0.0.1:PORT") for r in seen.received], messages))
        versions.append(seen.versions)
    both_read = min(map(len, versions))  # where the two part on purpose, one reads fewer answers
    assert versions[0][:both_read] == versions[1][:both_read], versions  # "HTTP/1.0" or "HTTP/1.1", the status line's reason
    return results[0], results[1]


LONG = bytes(range(256)) * 1024  # 256 KiB, more than one read
GET = ("GET", "/api/tags")
# name: (script, requests, proxy's error messages)
SAME = {
    "content-length, kept alive": (lambda: answering(ok(b"hello", b"X-One: 1", b"x-two: 2")), [GET, ("GET", "/api/ps"), GET], []),
    "chunked with a trailer": (lambda: answering(chunked(b"Hel", b"lo", trailer=b"X-Tail: t\r\n")), [GET, GET], []),
    "until the end of the connection": (lambda: answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", then="close"), [GET, GET], []),
    "connection: close is not reused": (lambda: answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", then="close"), [GET, GET], []),
    "HTTP/1.0 without keep-alive": (lambda: answering(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"), [GET, GET], []),
    "head with a length": (lambda: answering(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"), [("HEAD", "/"), ("HEAD", "/")], []),
    "204 and 304 have no body": (lambda: answering(b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", ok(b"after")), [GET, GET, GET], []),
    "interim answers are read past": (lambda: answering(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"final")), [GET, GET], []),
    "a long body in many reads": (lambda: answering(ok(LONG)), [GET, GET], []),
    "a long chunked body": (lambda: answering(chunked(LONG[:70000], LONG[70000:])), [GET], []),
    "an error status passes as it is": (lambda: answering(b'HTTP/1.1 404 Not Found\r\nContent-Length: 20\r\n\r\n{"error":"no model"}'), [GET, GET], []),
    "repeated headers keep their order": (lambda: answering(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nVary: x\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"), [GET], []),
    "a body with a length": (lambda: answering(ok(b"took it")), [("POST", "/api/generate", b'{"model":"m","prompt":"hi"}'), ("POST", "/api/chat", b"")], []),
    "an upload in parts, chunked": (lambda: answering(ok(b"took it")), [("POST", "/api/generate", [b'{"model":', b"", b'"m"}'])], []),
    "an upload in parts with a length": (lambda: answering(ok(b"took it")), [("POST", "/api/generate", [b"abc", b"", b"de"], {"Content-Length": "5"})], []),
    "a header that only says chunked": (lambda: answering(ok(b"took it")), [("POST", "/api/generate", [b"abc", b"de"], {"Content-Length": "5", "X-Note": "chunked"})], []),
    "a long upload": (lambda: answering(ok(b"took it")), [("POST", "/api/create", LONG * 8)], []),
    "closed before any answer": (lambda: answering(then="close"), [GET], ["upstream closed the connection without sending a response"]),
    "closed in the middle of a body": (lambda: answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", then="close"), [GET], ["upstream closed the connection before the response was complete"]),
    "closed in the middle of a chunked body": (lambda: answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", then="close"), [GET], ["upstream closed the connection before the response was complete"]),
    "not HTTP": (lambda: answering(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), [GET], ["upstream sent an invalid response: Expected HTTP/, RTSP/ or ICE/"]),
    "a bad chunk size": (lambda: answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"), [GET], ["upstream sent an invalid response: Invalid character in chunk size"]),
    "a switch of protocols nobody asked for": (lambda: answering(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), [GET], ["upstream switched protocols (101) though no upgrade was asked for"]),
    "reset in the middle of a body": (lambda: answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", then="reset"), [GET], ["[Errno 104] Connection reset by peer"]),
    "reset before any answer": (lambda: answering(then="reset"), [GET], ["[Errno 104] Connection reset by peer"]),
}


def _same(name: str, **kwargs) -> None:
    script, requests, messages = SAME[name]
    proxy, library = both(script, requests, **kwargs)
    assert proxy[:2] == library[:2], (proxy[:2], library[:2])
    assert proxy[2] == messages, proxy[2]


@pytest.mark.parametrize("name", SAME)
def test_both_transports_give_the_same_outcome(name):
    _same(name)


def test_the_outcomes_are_what_each_case_is_meant_to_show():
    """The cases differ where they are meant to: a guard against a server script that answers everything alike."""
    (outcomes, received, _), _ = both(SAME["content-length, kept alive"][0], SAME["content-length, kept alive"][1])
    assert outcomes == [(200, [(b"Content-Type", b"text/plain"), (b"X-One", b"1"), (b"x-two", b"2"), (b"Content-Length", b"5")], b"hello")] * 3
    assert len(received) == 1 and received[0].count(b"GET ") == 3 and b"GET /api/ps HTTP/1.1\r\n" in received[0]
    (outcomes, received, _), _ = both(SAME["connection: close is not reused"][0], [GET, GET])
    assert [o[2] for o in outcomes] == [b"ok", b"ok"] and len(received) == 2
    (outcomes, received, _), _ = both(SAME["204 and 304 have no body"][0], [GET, GET, GET])
    assert [(o[0], o[2]) for o in outcomes] == [(204, b""), (304, b""), (200, b"after")] and len(received) == 1
    (outcomes, received, _), _ = both(SAME["head with a length"][0], [("HEAD", "/"), ("HEAD", "/")])
    assert [(o[0], o[2]) for o in outcomes] == [(200, b""), (200, b"")] and len(received) == 1
    (outcomes, _, _), _ = both(SAME["interim answers are read past"][0], [GET])
    assert outcomes == [(200, [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")], b"final")]
    (outcomes, received, _), _ = both(SAME["an upload in parts, chunked"][0], SAME["an upload in parts, chunked"][1])
    assert received[0].endswith(b"\r\n\r\n9\r\n{\"model\":\r\n4\r\n\"m\"}\r\n0\r\n\r\n"), received
    (outcomes, _, _), _ = both(SAME["until the end of the connection"][0], [GET])
    assert outcomes[0][2] == b"all of it"


def test_a_kept_alive_connection_the_upstream_closed_while_idle_is_not_used():
    """The upstream closes each connection a moment after answering (Go's idle timeout): the next request opens
    a new one, and no answer is lost."""

    def script() -> Script:
        async def run(conn: Conn) -> None:
            await conn.request()
            await conn.send(ok(b"once"))
            await asyncio.sleep(0.02)
            conn.close()

        return run

    proxy, library = both(script, [GET, GET, GET], pause=0.1)
    assert proxy[:2] == library[:2]
    assert [o[2] for o in proxy[0]] == [b"once"] * 3 and len(proxy[1]) == 3


def test_stray_bytes_after_an_answer_end_its_connection():
    """An answer with more bytes behind it in the same read: httpcore keeps them for the next request (h11's
    buffer, where its readability check cannot see them) and hands that request the stray answer; the proxy's
    transport never reuses such a connection, so each request gets its own answer. The two part here on purpose."""

    def script() -> Script:
        async def run(conn: Conn) -> None:
            while (head := await conn.request()) is not None:
                target = head.split(b" ")[1]
                await conn.send(ok(target) + ok(b"stray"))

        return run

    proxy, library = both(script, [("GET", "/one"), ("GET", "/two")])
    assert [o[2] for o in proxy[0]] == [b"/one", b"/two"] and len(proxy[1]) == 2
    assert [o[2] for o in library[0]] != [b"/one", b"/two"], "httpcore now drops such a connection: make this case SAME"


def test_a_request_on_a_connection_closed_under_it_is_sent_again_once():
    """The upstream takes the second request on a kept-alive connection and closes without answering (a keep-alive
    race): a request whose body can be sent again is, once, on a new connection. httpcore gives up instead; the
    proxy's transport retries, as Go's and urllib3's do for idempotent or unsent requests. An upload that was
    streamed cannot be replayed and fails as httpcore's does."""

    def script() -> Script:
        count = 0

        async def run(conn: Conn) -> None:
            nonlocal count
            count += 1
            await conn.request()
            await conn.send(ok(b"first" if count == 1 else b"again"))
            if count == 1:
                await conn.request()
                conn.close()
            else:
                while await conn.request() is not None:
                    await conn.send(ok(b"again"))

        return run

    proxy, library = both(script, [GET, ("POST", "/api/chat", b"{}")])
    assert [o[2] for o in proxy[0]] == [b"first", b"again"] and len(proxy[1]) == 2
    assert proxy[1][1].startswith(b"POST /api/chat HTTP/1.1\r\n")
    assert library[0] == [(200, [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")], b"first"), "RemoteProtocolError"]
    proxy, library = both(script, [GET, ("POST", "/api/chat", [b"{", b"}"])])
    assert proxy[0][1] == library[0][1] == "RemoteProtocolError" and len(proxy[1]) == 1
    assert (proxy[2], library[2]) == (["upstream closed the connection without sending a response"], ["Server disconnected without sending a response."])


def test_no_more_idle_connections_are_kept_than_allowed():
    """Two requests at once open two connections; with room for one idle connection, the next two find one kept
    and open a second, as httpcore's max_keepalive_connections does."""

    async def main(kind: str) -> int:
        seen = Upstream()

        async def accept(reader, writer):
            seen.received.append(bytearray())
            conn = Conn(reader, writer, seen.received[-1])
            while await conn.request() is not None:
                await asyncio.sleep(0.05)
                await conn.send(ok(b"x"))

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        transport = UpstreamTransport(max_idle=1) if kind == "proxy" else httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=1))
        async with server, httpx.AsyncClient(transport=transport) as client:
            for _ in range(2):
                answers = await asyncio.gather(client.get(url), client.get(url))
                assert [a.content for a in answers] == [b"x", b"x"]
        return len(seen.received)

    assert asyncio.run(main("proxy")) == asyncio.run(main("httpcore")) == 3


def test_after_send_is_called_once_a_request_is_written():
    """after_send (from which the proxy times Ollama's work) is called once a request is written whole, before its
    answer: for a body far larger than the sockets' buffers (64 MiB), most of it is in the upstream's hands by then,
    and the upstream has not answered yet (it answers once it has read it all)."""
    size = 64 * 1024 * 1024
    progress = {"read": 0, "answered": 0}
    calls: list[tuple[int, int]] = []

    async def script(conn: Conn) -> None:
        for _ in range(2):
            head = await conn.reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"POST"):  # the body read as it comes, its progress kept
                while progress["read"] < size:
                    progress["read"] += len(await conn.reader.read(1 << 20))
            progress["answered"] += 1
            await conn.send(ok(b"x"))

    outcomes, _, _ = asyncio.run(run_case("proxy", script, [("POST", "/api/create", b"\0" * size), GET],
                                          after_send=lambda: calls.append((progress["read"], progress["answered"]))))
    assert [o[2] for o in outcomes] == [b"x", b"x"]
    assert len(calls) == 2, calls
    (read, answered), (_, answered_then) = calls
    assert read >= size - 16 * 1024 * 1024 and answered == 0, (read, size)  # written, not merely begun; not yet answered
    assert answered_then == 1  # the second: after the first was answered, before its own


def test_only_plain_http_upstreams():
    async def main() -> str:
        async with httpx.AsyncClient(transport=UpstreamTransport()) as client:
            try:
                await client.get("https://127.0.0.1:1/")
            except httpx.UnsupportedProtocol as exc:
                return str(exc)
        return "answered"

    assert asyncio.run(main()) == "the upstream must be plain http://, not https://"


def test_a_refused_connection_is_a_connect_error_naming_the_address():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now

    async def main(kind: str) -> tuple[str, str]:
        transport = UpstreamTransport() if kind == "proxy" else httpx.AsyncHTTPTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            try:
                await client.get(f"http://127.0.0.1:{port}/")
            except httpx.HTTPError as exc:
                return type(exc).__name__, str(exc)
        return "answered", ""

    proxy, library = asyncio.run(main("proxy")), asyncio.run(main("httpcore"))
    assert proxy[0] == library[0] == "ConnectError"
    assert proxy[1] == f"Connect call failed ('127.0.0.1', {port}) (127.0.0.1:{port})", proxy


def test_a_listener_that_never_accepts_is_a_connect_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # fills the accept queue: the next SYN is dropped

    async def main(kind: str) -> tuple[str, str, float]:
        transport = UpstreamTransport() if kind == "proxy" else httpx.AsyncHTTPTransport()
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, connect=0.5)) as client:
            started = loop.time()
            try:
                await client.get(f"http://127.0.0.1:{port}/")
            except httpx.HTTPError as exc:
                return type(exc).__name__, str(exc), loop.time() - started
        return "answered", "", 0.0

    try:
        proxy, library = asyncio.run(main("proxy")), asyncio.run(main("httpcore"))
    finally:
        filler.close()
        listener.close()
    assert proxy[0] == library[0] == "ConnectTimeout"
    assert proxy[1] == f"no connection to 127.0.0.1:{port} within 0.5 s"
    assert 0.45 <= proxy[2] < 2 and 0.45 <= library[2] < 2, (proxy, library)


def slow(*steps: bytes | float) -> Callable[[], Script]:
    """Answers the first request with pieces and pauses (seconds) between them."""

    def factory() -> Script:
        async def run(conn: Conn) -> None:
            await conn.request()
            for step in steps:
                if isinstance(step, float):
                    await asyncio.sleep(step)
                else:
                    await conn.send(step)
            await asyncio.sleep(0.4)

        return run

    return factory


def test_the_read_timeout_counts_while_waiting_on_the_upstream():
    """Read timeout 0.5 s. No head within it: ReadTimeout. A body whose pieces come 0.1 s apart for 0.8 s in all:
    no timeout (it is per wait, not per answer). A body that stops for 1 s: ReadTimeout."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"2\r\nab\r\n"
    cases = {
        "no head": (slow(1.0, ok(b"late")), ["no answer from upstream within 0.5 s"], ["ReadTimeout"]),
        "steady pieces": (slow(head, *[x for _ in range(8) for x in (0.1, piece)], b"0\r\n\r\n"), [], [(200, [(b"Transfer-Encoding", b"chunked")], b"ab" * 8)]),
        "a stall mid-body": (slow(head, piece, 1.0, piece, b"0\r\n\r\n"), ["no data from upstream for 0.5 s"], ["ReadTimeout"]),
        "a stall in the head": (slow(b"HTTP/1.1 200 OK\r\n", 1.0, b"Content-Length: 0\r\n\r\n"), ["no answer from upstream within 0.5 s"], ["ReadTimeout"]),
        "a bad chunk in a later read": (slow(head, piece, 0.05, b"zz\r\nab\r\n"), ["upstream sent an invalid response: Invalid character in chunk size"], ["RemoteProtocolError"]),
    }
    for name, (script, messages, outcomes) in cases.items():
        proxy, library = both(script, [GET], timeout=TIMEOUT)
        assert proxy[0] == library[0] == outcomes, (name, proxy[0], library[0])
        assert proxy[2] == messages, (name, proxy[2])


def test_a_slow_client_is_not_a_read_timeout():
    """The client takes 0.7 s over each piece while the upstream has long sent the rest: only time spent waiting
    on the upstream counts against the 0.5 s read timeout, for both transports."""

    async def main(kind: str) -> list[bytes]:
        async def accept(reader, writer):
            conn = Conn(reader, writer, bytearray())
            await conn.request()
            await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(3):
                await conn.send(b"4\r\nword\r\n")
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
            await conn.send(b"0\r\n\r\n")

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        transport = UpstreamTransport() if kind == "proxy" else httpx.AsyncHTTPTransport()
        pieces = []
        async with server, httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
            async with client.stream("GET", url) as answer:
                async for piece in answer.aiter_raw():
                    pieces.append(piece)
                    await asyncio.sleep(0.7)
        return pieces

    proxy, library = asyncio.run(main("proxy")), asyncio.run(main("httpcore"))
    assert b"".join(proxy) == b"".join(library) == b"word" * 3


def test_the_idle_watchdog_checks_again_while_the_reader_is_away():
    """The watchdog's timer fires while nothing is being read (a slow client): it must not cancel, and it must
    re-arm from the moment it fired, so a wait on the upstream that starts later is still timed, from when it began.
    The loop's clock is the test's: each check is run at the time it was set for, whatever the machine is doing."""

    async def main() -> list:
        loop = asyncio.get_running_loop()
        clock = [1000.0]
        loop.time = lambda: clock[0]  # the watchdog reads and arms by the loop's clock

        async def reader() -> upstream._IdleWatchdog:  # the task it would cancel, done before any check runs
            return upstream._IdleWatchdog(0.1)

        dog = await asyncio.create_task(reader())
        seen = []

        def run_check(at: float) -> None:
            clock[0] = at
            dog._handle._run()  # the timer's callback, as the loop runs it at its time
            seen.append((round(at, 6), dog.expired(), round(dog._handle.when(), 6)))

        assert dog._handle.when() == pytest.approx(1000.1)
        run_check(1000.1)  # not reading (the client is slow): no expiry, the next check 0.1 s on
        clock[0] = 1000.15
        dog.reading = True  # the wait on the upstream begins
        run_check(1000.2)  # waiting for 0.05 s: the next check when it will have waited 0.1 s (re-arming from the check: 1000.3)
        run_check(1000.25)  # waited 0.1 s: expired
        dog.stop()
        del loop.time
        return seen

    assert asyncio.run(main()) == [(1000.1, False, 1000.2), (1000.2, False, 1000.25), (1000.25, True, 1000.25)]


def test_no_timeout_means_no_watchdog_timer():
    async def main() -> tuple[object, bool]:
        dog = upstream._IdleWatchdog(None)
        dog.reading = True
        await asyncio.sleep(0.05)
        handle = dog._handle
        dog.stop()
        return handle, dog.expired()

    assert asyncio.run(main()) == (None, False)


def test_an_upstream_that_stops_reading_an_upload_is_a_write_timeout():
    """A listener with a small receive buffer whose connection never reads: the upload fills the socket buffers
    and the write timeout (0.5 s) fires, for both transports (each with the same class, the proxy's with its own
    message)."""

    def factory() -> Script:
        async def run(conn: Conn) -> None:
            await asyncio.sleep(1)

        return run

    results = []
    for kind in TRANSPORTS:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.1", 0))
        for body in (LONG * 64, [LONG] * 64):  # whole, and streamed in parts
            sock_copy = sock.dup()
            outcomes, _, messages = asyncio.run(run_case(kind, factory(), [("POST", "/api/create", body)], sock=sock_copy, timeout=TIMEOUT))
            results.append((kind, outcomes, messages))
        sock.close()
    assert [r[1] for r in results] == [["WriteTimeout"]] * 4, results
    assert [r[2] for r in results[:2]] == [["upstream did not take the request body within 0.5 s"]] * 2


def test_an_upstream_that_answers_early_and_closes_is_answered():
    """The upstream answers 413 after the head, before the body is on its way, and closes its side; it reads the rest
    of the body to the end (Go's server reads some of it before closing, so that the client reads the answer rather
    than a reset): both transports give the client the 413, whole, every time."""

    def factory() -> Script:
        async def run(conn: Conn) -> None:
            await conn.reader.readuntil(b"\r\n\r\n")
            await conn.send(b"HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig")
            conn.writer.write_eof()
            while await conn.reader.read(1 << 16):
                pass

        return run

    for body in (LONG * 64, [LONG] * 64):
        proxy, library = both(factory, [("POST", "/api/create", body)])
        assert proxy[0] == library[0] == [(413, [(b"Connection", b"close"), (b"Content-Length", b"3")], b"big")], (proxy[0], library[0])


# What an idle kept-alive connection may hold ---------------------------------------------------------------

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
