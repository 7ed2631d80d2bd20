"""Every upstream fault docs/metrics.md names, provoked for real on a socket, with the status the client gets
and the ``error_type`` the proxy records.

The upstream here is a raw TCP listener that misbehaves on purpose (the fake Ollama answers well-formed HTTP
and cannot): one that never accepts, one that resets the connection in the middle of a body, one that stops
reading an upload, one that drops it. Each runs through the
proxy's own transport and through httpx's (httpcore), which must agree. The dropped upload found the own
transport answering 500 (uvloop refuses a write to a closed transport with RuntimeError) where httpcore
reads what the server sent before closing, and reports the read's error when it sent nothing.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.harness import otel_proxy, scrape

GENERATE = {"model": "llama3.2:1b", "prompt": "hi"}
TRANSPORTS = pytest.mark.parametrize("transport", ["proxy", "httpx"])  # --upstream-transport
UPLOAD = 32 * 1024 * 1024  # far more than the kernel's socket buffers hold


def reset(conn: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed or killed server's kernel does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@contextmanager
def misbehaving(handle: Callable[[socket.socket, bytes], None], receive_buffer: int | None = None) -> Iterator[str]:
    """A listener whose every connection gets ``handle(conn, head)``; /api/tags and /api/ps (the proxy's own
    reads at start) get an empty answer first."""
    listener = socket.socket()
    if receive_buffer is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    def one(conn: socket.socket) -> None:
        try:
            head = read_head(conn)
            if head.startswith((b"GET /api/tags", b"GET /api/ps", b"GET /api/version")):
                body = b'{"models": []}' if b"/api/version" not in head else b'{"version": "0.32.15"}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                conn.close()
                return
            handle(conn, head)
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            try:
                conn.close()
            except OSError:
                pass


def recorded(proxy_url: str, error_type: str) -> dict[str, str]:
    """The one request series with this error_type (its labels), waiting for the bookkeeping to finish."""
    deadline = time.monotonic() + 10
    while True:
        series = scrape(proxy_url).series("http_server_request_duration_seconds_count", error_type=error_type)
        if series or time.monotonic() > deadline:
            assert len(series) == 1, series
            return series[0]
        time.sleep(0.1)


@TRANSPORTS
def test_a_connect_timeout_is_a_504_after_the_connect_timeout(transport):
    """A listener that never accepts, its queue full: the SYN goes unanswered, so the connect times out
    (a closed port would refuse at once, which is connect_error)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # fills the accept queue: the next SYN is dropped
    try:
        with otel_proxy(f"http://127.0.0.1:{port}", "--connect-timeout", "1", "--upstream-transport", transport) as proxy:
            started = time.perf_counter()
            answer = httpx.post(proxy.url + "/api/generate", json=GENERATE, timeout=30)
            took = time.perf_counter() - started
            assert answer.status_code == 504 and f"127.0.0.1:{port}" in answer.json()["error"], answer.text
            assert "connect_timeout" in answer.json()["error"]
            assert 0.9 <= took < 5, took
            assert recorded(proxy.url, "connect_timeout")["http_response_status_code"] == "504"
    finally:
        filler.close()
        listener.close()


@TRANSPORTS
def test_a_reset_in_the_middle_of_a_body_closes_the_clients_stream_unfinished(transport):
    def answer_then_reset(conn: socket.socket, head: bytes) -> None:
        chunk = b'{"model":"llama3.2:1b","response":"Hel","done":false}\n'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(chunk), chunk))
        time.sleep(0.3)
        reset(conn)

    with misbehaving(answer_then_reset) as upstream, otel_proxy(upstream, "--upstream-transport", transport) as proxy:
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream("POST", proxy.url + "/api/generate", json=GENERATE, timeout=10) as answer:
                assert answer.status_code == 200
                for part in answer.iter_raw():
                    received += part
        assert received == b'{"model":"llama3.2:1b","response":"Hel","done":false}\n'  # what came before the reset, then no end
        assert recorded(proxy.url, "upstream_reset")["http_response_status_code"] == "200"


def upload(proxy_url: str) -> tuple[int | None, str]:
    """A large body to /api/generate; the status the client got, or the error that ended its upload."""
    def body() -> Iterator[bytes]:
        yield b'{"model": "llama3.2:1b", "prompt": "'
        for _ in range(UPLOAD // 65536):
            yield b"x" * 65536
        yield b'"}'

    try:
        answer = httpx.post(proxy_url + "/api/generate", content=body(), headers={"content-type": "application/json"}, timeout=30)
        return answer.status_code, answer.text
    except httpx.HTTPError as exc:  # the proxy answered and closed before the client had sent it all
        return None, repr(exc)


@TRANSPORTS
def test_an_upstream_that_stops_reading_an_upload_is_a_write_timeout(transport):
    stalled = threading.Event()

    def stop_reading(conn: socket.socket, head: bytes) -> None:
        stalled.set()
        time.sleep(20)  # holds the connection open and reads nothing more

    with misbehaving(stop_reading, receive_buffer=4096) as upstream, otel_proxy(upstream, "--idle-timeout", "1", "--upstream-transport", transport) as proxy:
        started = time.perf_counter()
        status, text = upload(proxy.url)
        assert stalled.is_set()
        assert status in (504, None), (status, text)
        assert time.perf_counter() - started < 15
        assert recorded(proxy.url, "write_timeout")["http_response_status_code"] == "504"


@TRANSPORTS
def test_an_upstream_that_drops_an_upload_is_a_reset_as_httpcore_reads_it(transport):
    """Ollama gone mid-upload (a RST): the write fails, the read that follows says why: upstream_reset, 502."""
    def drop(conn: socket.socket, head: bytes) -> None:
        conn.recv(65536)  # a little of the body, then gone
        reset(conn)

    with misbehaving(drop, receive_buffer=4096) as upstream, otel_proxy(upstream, "--upstream-transport", transport) as proxy:
        for _ in range(3):  # the close can meet the body's first write or a later one
            status, text = upload(proxy.url)
            assert status in (502, None), (status, text)
        assert "Traceback" not in proxy.log()
        labels = recorded(proxy.url, "upstream_reset")
        assert labels["http_response_status_code"] == "502"
        assert scrape(proxy.url).value("http_server_request_duration_seconds_count", http_route="/api/generate") == 3


CHAT_EVENTS = [  # an Ollama /v1/chat/completions stream (openai/openai.go ChatCompletionChunk), event by event
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"llama3.2:1b","system_fingerprint":"fp_ollama",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n',
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"llama3.2:1b","system_fingerprint":"fp_ollama",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


def pausing_after(events: int) -> Callable[[socket.socket, bytes], None]:
    """An upstream that streams the first ``events`` chat events, pauses 1.5 s, then sends the rest and the end."""
    def handle(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for index, event in enumerate(CHAT_EVENTS):
            if index == events:
                time.sleep(1.5)
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
        time.sleep(1.5 if events == len(CHAT_EVENTS) else 0)
        conn.sendall(b"0\r\n\r\n")
        conn.close()
    return handle


@pytest.mark.parametrize("events, error_type", [(len(CHAT_EVENTS), None), (1, "client_disconnected")])
def test_a_client_that_hangs_up_after_the_final_event_got_the_whole_answer(events, error_type):
    """An SSE client (openai-python) stops reading at ``data: [DONE]`` and may close the connection before the
    stream's last bytes, as a busy host showed: the answer is whole, so the request is no failure. One that
    hangs up before the final event is a client that went away."""
    body = b'{"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
    with misbehaving(pausing_after(events)) as upstream, otel_proxy(upstream) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            seen = b""
            wanted = CHAT_EVENTS[events - 1].strip()
            while wanted not in seen:
                chunk = client.recv(65536)
                assert chunk, seen
                seen += chunk
        deadline = time.monotonic() + 10
        while not (entries := httpx.get(proxy.url + "/-/requests").json()["requests"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        (entry,) = entries
        assert (entry["status"], entry["error_type"]) == (200, error_type), entry
        if error_type is None:
            assert (entry["output_tokens"], entry["finish_reason"]) == (1, "stop")
            assert scrape(proxy.url).series("http_server_request_duration_seconds_count", error_type="client_disconnected") == []
