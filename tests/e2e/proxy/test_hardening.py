"""An exposed proxy that cannot be frozen, flooded or fooled without a key (issue 38): each case a probe found, on raw
sockets against the real proxy with --api-keys, each answer and close waited for as an event, memory measured by a
watcher of the proxy's peak RSS.

- D1: after a refusal nothing more of the request is read; a chunked body's framing and trailers are bounded as a
  head is.
- D2: heads must arrive and bodies keep arriving (--header-timeout); open connections are capped in total and per
  address, with a 503; the proxy raises its own file limit.
- D3, D4: a refused request writes nothing a stranger chooses: no /-/requests entry, a fixed client label.
- D5: a key file that cannot be read is an error in the log, the old keys stay, and the watcher lives on.
- A client that hangs up before the first byte frees its key's slot, and its request to Ollama is cancelled.
"""

from __future__ import annotations

import json
import resource
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.harness import PYTHON, Scrape, Server, configure_fake, fake_stats, free_port, otel_proxy, run_server
from tests.support.raw_http import RawConnection, chunked, request

MODEL = "llama3.2:1b"
GOOD = "sk-webui-0123456789"
TOKEN = "scrape-me"
TIMEOUT_S = 1.0  # --header-timeout here: the default is 30 s
GENERATE = json.dumps({"model": MODEL, "prompt": "one two", "stream": False, "options": {"num_predict": 2}}).encode()


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.write_text(f"open-webui: {GOOD}\nbob: sk-bob-9876543210\n")
    return keys


def keyed_proxy(fake: Server, keys_file: Path, *extra: str, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    """A proxy with keys and a 1 s header timeout; with ``tls``, serving https (``extra`` names its certificate)."""
    if tls is None:
        with otel_proxy(fake.url, "--api-keys", str(keys_file), "--metrics-token", TOKEN, "--header-timeout", str(TIMEOUT_S), *extra) as proxy:
            yield proxy
        return
    port = free_port()
    args = [PYTHON, "-m", "otel_proxy", "--port", str(port), "--upstream", fake.url, "--api-keys", str(keys_file), "--header-timeout", str(TIMEOUT_S), *extra]
    with run_server(args, port, "/-/healthy", ready_check=lambda url: httpx.get(url.replace("http://", "https://"), verify=tls, timeout=1)) as proxy:
        yield proxy


@pytest.fixture
def keyed(fake: Server, keys_file: Path) -> Iterator[Server]:
    yield from keyed_proxy(fake, keys_file, "--max-concurrent-per-key", "1")


def recent(proxy: Server) -> list[dict]:
    return httpx.get(proxy.url + "/-/requests", headers={"authorization": f"Bearer {TOKEN}"}).json()["requests"]


def metrics(proxy: Server) -> Scrape:
    return Scrape(httpx.get(proxy.url + "/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text)


class PeakMemory:
    """The highest RSS of a process while the block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.process, self.start, self.peak = psutil.Process(pid), psutil.Process(pid).memory_info().rss, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def grew_mb(self) -> float:
        return max(0, self.peak - self.start) / 2**20


def healthy_within(proxy: Server) -> float:
    """Seconds the proxy takes to answer /-/healthy (its event loop's responsiveness)."""
    started = time.monotonic()
    httpx.get(proxy.url + "/-/healthy", timeout=30).raise_for_status()
    return time.monotonic() - started


def send_all(conn: RawConnection, data: bytes, piece: int = 1 << 20) -> int:
    """Writes ``data`` until the server closes the connection; the bytes it took."""
    sent = 0
    try:
        for start in range(0, len(data), piece):
            conn.sock.sendall(data[start:start + piece])
            sent += min(piece, len(data) - start)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def test_d1_a_refused_request_is_not_read_on_and_its_trailer_costs_nothing(keyed: Server):
    """Before: one 128 MiB trailer field after a 401 added 212 MB and froze the event loop for 8.6 s (quadratic)."""
    trailer = b"x-pad: " + b"a" * (64 << 20) + b"\r\n\r\n"
    head = b"POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Client-Name: bob\r\n\r\n"
    with PeakMemory(keyed.process.pid) as memory, RawConnection(keyed.port, timeout=20) as conn:
        conn.send(head + chunked(GENERATE, size=1024)[:-2])  # the body, then the trailer section
        sent = send_all(conn, trailer)
        answer, took = conn.until_closed()
        waited = healthy_within(keyed)
    assert answer.startswith(b"HTTP/1.1 401 ") and b"connection: close" in answer.lower()
    assert sent < len(trailer) and took < 5  # closed, not read to the end
    assert memory.grew_mb < 16 and waited < 0.5, (memory.grew_mb, waited)


def test_d1_a_keyed_chunked_body_with_a_huge_trailer_is_cut_at_the_head_limit(keyed: Server):
    trailer = b"x-pad: " + b"a" * (8 << 20) + b"\r\n\r\n"
    head = f"POST /api/generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GOOD}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    with PeakMemory(keyed.process.pid) as memory, RawConnection(keyed.port, timeout=20) as conn:
        conn.send(head + chunked(GENERATE)[:-2])
        sent = send_all(conn, trailer)
        conn.until_closed()
    assert sent < len(trailer) and memory.grew_mb < 16, (sent, memory.grew_mb)
    framing = head + chunked(b"x" * 10, size=1)  # one-byte chunks: framing five times the data, well within the bound
    with RawConnection(keyed.port) as conn:
        conn.send(framing.replace(b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: chunked\r\nX-Small: 1\r\n"))
        assert conn.answer().status == 400  # the fake's answer to a body that is not JSON: it reached Ollama whole


@pytest.mark.parametrize("what", ["nothing", "a head a byte at a time", "a body that stops", "TLS with nothing after"])
def test_d2_a_slow_or_silent_client_is_closed_at_the_header_timeout(fake: Server, keys_file: Path, tmp_path: Path, what: str):
    """Before: each of these was still open after 60-90 s."""
    extra: tuple[str, ...] = ()
    context = None
    if what.startswith("TLS"):
        certificate = tmp_path / "cert.pem"
        key = tmp_path / "cert.key"
        import subprocess
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(certificate), "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        extra = ("--tls-cert", str(certificate), "--tls-key", str(key))
        context = ssl.create_default_context(cafile=str(certificate))
    for proxy in keyed_proxy(fake, keys_file, *extra, tls=context):
        with RawConnection(proxy.port, timeout=15) as conn:
            if context is not None:
                conn.sock = context.wrap_socket(conn.sock, server_hostname="127.0.0.1")
            started = time.monotonic()
            if what == "a head a byte at a time":
                for byte in b"POST /api/generate HTTP/1.1\r\nHost: x\r\n":
                    try:
                        conn.send(bytes([byte]))
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    time.sleep(0.1)
            elif what == "a body that stops":
                conn.send(f"POST /api/generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GOOD}\r\nContent-Length: 1000\r\n\r\n{{\"model\"".encode())
            answer, _ = conn.until_closed()
            closed_after = time.monotonic() - started
        assert TIMEOUT_S * 0.9 <= closed_after < TIMEOUT_S + 5, closed_after
        if what != "a body that stops":  # the head never arrived: a 408 says why; a body cut short has no answer to give
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_d2_connections_are_capped_per_address_with_a_503_and_another_address_is_served(fake: Server, keys_file: Path):
    for proxy in keyed_proxy(fake, keys_file, "--max-connections-per-peer", "20"):
        held = [RawConnection(proxy.port) for _ in range(20)]
        try:
            with RawConnection(proxy.port) as refused:
                answer, _ = refused.until_closed()
            assert answer.startswith(b"HTTP/1.1 503 ") and b"--max-connections-per-peer" in answer
            with RawConnection(proxy.port, source="127.0.0.2") as other:
                other.send(request("POST", "/api/generate", [("Authorization", f"Bearer {GOOD}")], GENERATE))
                assert other.answer().status == 200
        finally:
            for conn in held:
                conn.close()
        assert proxy.log().count("refusing connections (503)") == 1  # one line a minute while the cap holds


def test_d2_a_keyed_request_from_another_address_is_served_fast_beside_a_thousand_idle_connections(fake: Server, keys_file: Path):
    """Done when: 1,000 idle connections and 50 slow heads from 127.0.0.1 held against a proxy limited to 1,024 files;
    a keyed request from 127.0.0.2 is served in under 100 ms."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))  # this test's own 1,050 sockets
    port = free_port()
    args = [PYTHON, "-m", "otel_proxy", "--port", str(port), "--upstream", fake.url, "--api-keys", str(keys_file), "--header-timeout", "30"]

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    with run_server(args, port, "/-/healthy", preexec_fn=limited) as proxy:
        assert psutil.Process(proxy.process.pid).rlimit(psutil.RLIMIT_NOFILE) == (1024, 1024)
        held: list[socket.socket] = []
        try:
            for index in range(1050):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                if index >= 1000:
                    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHo")  # a slow head
                held.append(sock)
            with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as client:
                client.get(proxy.url + "/-/healthy").raise_for_status()  # connected: the timing below is the request's
                started = time.monotonic()
                answer = client.post(proxy.url + "/api/generate", content=GENERATE, headers={"authorization": f"Bearer {GOOD}"})
                took = time.monotonic() - started
        finally:
            for sock in held:
                sock.close()
        assert answer.status_code == 200 and took < 0.1, (answer.status_code, took)
        assert "refusing connections (503)" in proxy.log() and "Too many open files" not in proxy.log()


def test_d3_d4_refused_requests_enter_no_list_and_carry_a_fixed_client_label(keyed: Server):
    """Before: 250 `POST *` requests replaced all 200 entries of /-/requests, and refused requests were counted under
    the X-Client-Name they chose: 501 charged to bob, who sent none."""
    before = recent(keyed)
    for refusal in (request("POST", "*", [("X-Client-Name", "bob")], GENERATE), request("POST", "/api/generate", [("X-Client-Name", "bob")], GENERATE),
                    request("POST", "/api/generate", [("X-Client-Name", "bob"), ("Authorization", "Bearer wrong")], GENERATE)):
        for _ in range(20):
            with RawConnection(keyed.port) as conn:
                conn.send(refusal)
                answer = conn.answer()
                assert answer.status == 401 and (b"connection", b"close") in [(n.lower(), v) for n, v in answer.headers]  # the key before the target
    assert recent(keyed) == before
    scraped = metrics(keyed)
    assert scraped.series("ollama_client_requests_total", ollama_client="bob") == []
    assert scraped.value("ollama_client_requests_total", ollama_client="unauthenticated") == 40  # the 20 `*` are no generation
    assert scraped.value("http_server_request_duration_seconds_count", http_response_status_code="401") == 60


def test_d5_a_key_file_that_cannot_be_read_keeps_the_old_keys_and_the_watcher_lives_on(fake: Server, keys_file: Path):
    for proxy in keyed_proxy(fake, keys_file):
        def status(key: str) -> int:
            return httpx.post(proxy.url + "/api/generate", content=GENERATE, headers={"authorization": f"Bearer {key}"}).status_code

        assert status("sk-bob-9876543210") == 200
        keys_file.write_bytes(f"open-webui: {GOOD}\nbob: sk-bob-\xff\n".encode("latin-1"))  # a byte that is no UTF-8
        deadline = time.monotonic() + 10
        while "not UTF-8 text" not in proxy.log():
            assert time.monotonic() < deadline, proxy.log()
            time.sleep(0.05)
        assert "line 2: not UTF-8 text (byte 0xff" in proxy.log() and "the 2 keys read before stay in force" in proxy.log()
        assert status("sk-bob-9876543210") == 200  # the old keys stay
        keys_file.write_text(f"\ufeffopen-webui: {GOOD}\n")  # bob revoked, by an editor that writes a BOM
        deadline = time.monotonic() + 10
        while status("sk-bob-9876543210") != 401:
            assert time.monotonic() < deadline, proxy.log()
            time.sleep(0.05)
        assert status(GOOD) == 200
        assert metrics(proxy).value("ollama_client_requests_total", ollama_client="open-webui") >= 1  # the name, not "\ufeffopen-webui"


def test_d5_a_key_file_that_is_no_utf8_at_start_is_a_usage_error(tmp_path: Path):
    keys = tmp_path / "keys"
    keys.write_bytes(b"a: \xff\xfe\n")
    import subprocess
    result = subprocess.run([PYTHON, "-m", "otel_proxy", "--api-keys", str(keys)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "line 1: not UTF-8 text" in result.stderr and "Traceback" not in result.stderr


def test_http09_after_an_empty_line_or_another_request_gets_a_400_or_its_head_times_out(keyed: Server):
    """Before: no answer, and the connection held."""
    with RawConnection(keyed.port) as conn:
        conn.send(b"\r\n\r\nGET /api/version\r\n")
        received, took = conn.until_closed()
    assert received.startswith(b"HTTP/1.1 400 ") and b"HTTP/0.9" in received and took < TIMEOUT_S, received
    first = request("GET", "/api/version", [("Authorization", f"Bearer {GOOD}")])
    with RawConnection(keyed.port) as conn:
        conn.send(first)
        assert conn.answer().status == 200
        conn.send(b"GET /api/version\r\n")
        received, took = conn.until_closed()
    assert received.startswith(b"HTTP/1.1 400 ") and b"HTTP/0.9" in received and took < TIMEOUT_S, received
    with RawConnection(keyed.port) as conn:  # pipelined in the same write: no line of its own to check, the head's time runs out
        conn.send(first + b"GET /api/version\r\n")
        received, took = conn.until_closed()
    assert received.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in received and took < TIMEOUT_S + 5, received


def test_a_client_that_hangs_up_before_the_first_byte_frees_its_slot_and_cancels_ollamas_work(fake: Server, keyed: Server):
    configure_fake(fake, answer_delay=3, reset_stats=True)
    try:
        with RawConnection(keyed.port) as conn:
            conn.send(request("POST", "/api/generate", [("Authorization", f"Bearer {GOOD}")], json.dumps({"model": MODEL, "prompt": "x"}).encode()))
            time.sleep(0.3)  # on its way to Ollama, which has not answered
        deadline = time.monotonic() + 5
        while fake_stats(fake)["disconnects"] < 1:  # the request to Ollama was cancelled: the fake saw it go
            assert time.monotonic() < deadline, fake_stats(fake)
            time.sleep(0.02)
        configure_fake(fake, answer_delay=0)
        started = time.monotonic()
        # --max-concurrent-per-key 1: a 429 if the slot were still held until Ollama answered
        assert httpx.post(keyed.url + "/api/generate", content=GENERATE, headers={"authorization": f"Bearer {GOOD}"}).status_code == 200
        assert time.monotonic() - started < 2
    finally:
        configure_fake(fake, answer_delay=0)
    entry = next(e for e in recent(keyed) if e["error_type"] == "client_disconnected")
    assert entry["error"] == "the client disconnected before Ollama's answer began; the request to Ollama was cancelled"
