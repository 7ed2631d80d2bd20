"""An exposed proxy: what a probe found (issue 22, part 4), TLS, key rotation and the per-key limit.

Each probe case sends what an attacker or a careless client would, over a real socket where
httpx would tidy the request first, and checks the answer, what reached Ollama and what was recorded.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import psutil
import pytest

from tests.support.harness import Scrape, Server, configure_fake, free_port, otel_proxy, run_server, PYTHON
from tests.support.raw_http import RawConnection, chunked, request

MODEL = "llama3.2:1b"
GOOD = "sk-webui-0123456789"
TOKEN = "scrape-me"
BEARER = {"authorization": f"Bearer {GOOD}"}


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.write_text(f"open-webui: {GOOD}\nclaude-code: sk-claude-9876543210\n")
    return keys


@pytest.fixture
def keyed(fake: Server, keys_file: Path, tmp_path: Path) -> Iterator[Server]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with otel_proxy(fake.url, "--api-keys", str(keys_file), "--metrics-token-file", str(token_file), "--max-concurrent-per-key", "2") as proxy:
        yield proxy


def recent(proxy: Server) -> list[dict]:
    return httpx.get(proxy.url + "/-/requests", headers={"authorization": f"Bearer {TOKEN}"}).json()["requests"]


def metrics(proxy: Server) -> Scrape:
    return Scrape(httpx.get(proxy.url + "/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text)


def test_dot_segments_are_routed_and_recorded_as_the_path_ollama_sees(fake: Server, keyed: Server):
    body = json.dumps({"model": MODEL, "prompt": "one two", "stream": False, "options": {"num_predict": 3}}).encode()
    with RawConnection(keyed.port) as conn:
        for path in ("/api/./generate", "/x/../api/generate"):
            conn.send(request("POST", path, [("Authorization", f"Bearer {GOOD}"), ("Content-Type", "application/json")], body))
            assert conn.answer().status == 200
    entries = recent(keyed)[:2]
    assert [(e["route"], e["client"], e["output_tokens"]) for e in entries] == [("/api/generate", "open-webui", 3)] * 2
    assert metrics(keyed).value("ollama_client_tokens_total", ollama_client="open-webui", gen_ai_token_type="output") == 6


def test_credentials_come_from_the_header_section_only_and_trailers_never_reach_ollama(fake: Server, keyed: Server):
    configure_fake(fake, reset_stats=True)
    head = b"POST /fake/echo HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n"
    with RawConnection(keyed.port) as conn:  # the key only in a trailer: refused
        conn.send(head + chunked(b"hello")[:-2] + f"Authorization: Bearer {GOOD}\r\n\r\n".encode())
        assert conn.answer().status == 401
    with RawConnection(keyed.port) as conn:  # a real key, and a trailer that must not become a header
        conn.send(head.replace(b"Host: p\r\n", f"Host: p\r\nAuthorization: Bearer {GOOD}\r\n".encode()) + chunked(b"hello")[:-2] + b"X-Smuggled: yes\r\n\r\n")
        answer = conn.answer()
    echoed = json.loads(answer.body)
    assert answer.status == 200 and echoed["body_bytes"] == 5
    assert "x-smuggled" not in dict(echoed["headers"])


def test_a_64_mib_head_is_refused_with_431_before_it_is_buffered(fake: Server):
    with otel_proxy(fake.url) as proxy:
        process = psutil.Process(proxy.process.pid)
        before = process.memory_info().rss
        peak = [before]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        with RawConnection(proxy.port) as conn:
            conn.send(b"GET /api/tags HTTP/1.1\r\nHost: p\r\n")
            line = b"X-Filler: " + b"a" * 65_000 + b"\r\n"
            try:
                for _ in range(64 * 2**20 // len(line)):
                    conn.send(line)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = conn.answer()
        stop.set()
        watcher.join()
    assert answer.status == 431 and "exceed the limit of 65536 bytes" in json.loads(answer.body)["error"]
    assert peak[0] - before < 8 * 2**20, f"the proxy grew by {(peak[0] - before) / 2**20:.1f} MiB"


def test_underscore_variants_of_credential_headers_never_reach_ollama(fake: Server, keyed: Server):
    with RawConnection(keyed.port) as conn:
        conn.send(request("GET", "/fake/echo", [("Authorization", f"Bearer {GOOD}"), ("x_api_key", GOOD), ("X-Api_Key", GOOD), ("x_other", "kept")]))
        answer = conn.answer()
    sent = dict(json.loads(answer.body)["headers"])
    assert "x_api_key" not in sent and "x-api_key" not in sent and sent["x_other"] == "kept"
    assert GOOD not in answer.body.decode()
    with RawConnection(keyed.port) as conn:  # nor do they count as a key
        conn.send(request("GET", "/api/tags", [("x_api_key", GOOD)]))
        assert conn.answer().status == 401


def test_the_scrape_token_is_checked_by_the_same_rule_as_keys(keyed: Server):
    url = keyed.url + "/metrics"
    assert httpx.get(url, headers=[("authorization", "Bearer wrong"), ("authorization", f"Bearer {TOKEN}")]).status_code == 401
    assert httpx.get(url, headers=[("authorization", f"Bearer {TOKEN}"), ("authorization", "Bearer wrong")]).status_code == 401
    assert httpx.get(url, headers={"authorization": f"Bearer {TOKEN}", "x-api-key": "other"}).status_code == 401
    assert httpx.get(url, headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
    assert httpx.get(url, headers={"x-api-key": TOKEN}).status_code == 200
    assert httpx.get(url, headers={"authorization": f"bearer {TOKEN}"}).status_code == 200


def test_refused_requests_are_counted_but_never_push_real_ones_out_of_the_record(keyed: Server):
    assert httpx.post(keyed.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False}, headers=BEARER).status_code == 200
    for _ in range(200):
        httpx.get(keyed.url + "/api/tags")
    entries = recent(keyed)
    assert [(e["route"], e["client"]) for e in entries] == [("/api/generate", "open-webui")]
    assert metrics(keyed).value("http_server_request_duration_seconds_count", error_type="unauthorized") == 200


def test_ready_names_ollama_only_to_whoever_holds_the_scrape_token(fake: Server, keyed: Server):
    refused = httpx.get(keyed.url + "/-/ready")
    assert refused.status_code == 401 and fake.url not in refused.text
    ready = httpx.get(keyed.url + "/-/ready", headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert ready["upstream"] == fake.url and ready["ollama_version"]


def test_a_long_path_is_capped_in_the_span(fake: Server):
    from tests.support.in_process import InProcessProxy

    with InProcessProxy(fake.url) as proxy:
        path = "/api/" + "x" * 60_000
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        httpx.get(proxy.url + path, headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        spans = proxy.spans_of_trace(int(trace, 16), at_least=2)
    server = next(span for span in spans if span.kind.name == "SERVER")
    assert server.attributes["url.path"] == path[:1024]


def test_upgrades_and_http_0_9_get_a_clear_400(fake: Server, keyed: Server):
    with RawConnection(keyed.port) as conn:
        conn.send(request("GET", "/api/tags", [("Authorization", f"Bearer {GOOD}"), ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")]))
        answer = conn.answer()
    assert answer.status == 400 and "Upgrade: h2c" in json.loads(answer.body)["error"]
    with RawConnection(keyed.port) as conn:
        conn.send(b"GET /api/tags\r\n")
        answer = conn.answer()
    assert answer.status == 400 and "HTTP/0.9" in json.loads(answer.body)["error"]
    assert httpx.get(keyed.url + "/api/tags", headers=BEARER).status_code == 200


def test_the_scrape_token_from_a_file_is_not_on_the_command_line(keyed: Server):
    assert TOKEN not in " ".join(psutil.Process(keyed.process.pid).cmdline())
    assert httpx.get(keyed.url + "/metrics").status_code == 401


def test_one_key_past_its_concurrency_limit_gets_429_in_each_apis_shape(fake: Server, keyed: Server):
    configure_fake(fake, token_delay=0.05)
    try:
        with httpx.Client(timeout=30) as client:
            streams = [client.stream("POST", keyed.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "options": {"num_predict": 20}}, headers=BEARER) for _ in range(2)]
            opened = [stream.__enter__() for stream in streams]
            assert [answer.status_code for answer in opened] == [200, 200]
            native = client.post(keyed.url + "/api/chat", json={"model": MODEL, "messages": []}, headers=BEARER)
            compatible = client.post(keyed.url + "/v1/chat/completions", json={"model": MODEL, "messages": []}, headers=BEARER)
            messages = client.post(keyed.url + "/v1/messages", json={"model": MODEL, "messages": []}, headers={"x-api-key": GOOD})
            other_key = client.get(keyed.url + "/api/tags", headers={"authorization": "Bearer sk-claude-9876543210"})
            for stream in streams:
                stream.__exit__(None, None, None)
        assert [native.status_code, compatible.status_code, messages.status_code] == [429] * 3
        assert "open-webui" in native.json()["error"] and compatible.json()["error"]["message"] and messages.json()["type"] == "error"
        assert other_key.status_code == 200
        assert metrics(keyed).value("http_server_request_duration_seconds_count", error_type="rate_limited", http_response_status_code="429") == 3
    finally:
        configure_fake(fake, token_delay=0.01)


def test_keys_are_read_again_on_sighup_and_when_the_file_changes_and_a_broken_file_keeps_the_old(fake: Server, keyed: Server, keys_file: Path):
    new = "sk-rotated-5555555555"

    def status(key: str) -> int:
        return httpx.get(keyed.url + "/api/tags", headers={"authorization": f"Bearer {key}"}).status_code

    def eventually(key: str, expected: int) -> None:
        deadline = time.monotonic() + 5
        while status(key) != expected:
            assert time.monotonic() < deadline, f"{key}: still not {expected}"
            time.sleep(0.05)

    configure_fake(fake, token_delay=0.05)
    try:
        with httpx.Client(timeout=30) as client, client.stream("POST", keyed.url + "/api/generate", json={"model": MODEL, "prompt": "x", "options": {"num_predict": 30}}, headers=BEARER) as in_flight:
            keys_file.write_text(f"rotated: {new}\n")
            os.kill(keyed.process.pid, signal.SIGHUP)
            eventually(new, 200)
            assert status(GOOD) == 401
            body = b"".join(in_flight.iter_raw())  # the request admitted with the old key runs to its end
        assert body.count(b"\n") == 31 and b'"done":true' in body
    finally:
        configure_fake(fake, token_delay=0.01)
    keys_file.write_text("this is not a key file\n")
    deadline = time.monotonic() + 10
    while "stay in force" not in keyed.log():  # the watcher read the broken file and said so
        assert time.monotonic() < deadline, "the broken keys file was never reported"
        time.sleep(0.05)
    assert status(new) == 200
    assert "line 1" in keyed.log()
    keys_file.write_text(f"open-webui: {GOOD}\n")  # changed, no signal
    eventually(GOOD, 200)
    assert new not in keyed.log() and GOOD not in keyed.log()


# TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA made here, and a certificate it signed for 127.0.0.1 and localhost."""
    directory = tmp_path_factory.mktemp("tls")
    paths = {name: directory / name for name in ("ca.pem", "ca.key", "cert.pem", "cert.key", "cert.csr", "ext")}
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA", "-keyout", str(paths["ca.key"]), "-out", str(paths["ca.pem"]))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(paths["cert.key"]), "-out", str(paths["cert.csr"]))
    paths["ext"].write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", str(paths["cert.csr"]), "-CA", str(paths["ca.pem"]), "-CAkey", str(paths["ca.key"]), "-CAcreateserial", "-days", "2", "-extfile", str(paths["ext"]), "-out", str(paths["cert.pem"]))
    return paths


def test_tls_serves_the_official_clients_and_streams_unchanged(fake: Server, certificates: dict[str, Path]):
    port = free_port()
    args = [PYTHON, "-m", "otel_proxy", "--port", str(port), "--upstream", fake.url, "--tls-cert", str(certificates["cert.pem"]), "--tls-key", str(certificates["cert.key"])]
    context = ssl.create_default_context(cafile=str(certificates["ca.pem"]))
    with run_server(args, port, "/-/healthy", ready_check=lambda url: httpx.get(url.replace("http://", "https://"), verify=context, timeout=1)):
        base = f"https://127.0.0.1:{port}"
        body = {"model": MODEL, "prompt": "one two three", "options": {"num_predict": 6}}
        direct = httpx.post(fake.url + "/api/generate", json=body).content
        proxied = httpx.post(base + "/api/generate", json=body, verify=context).content
        strip = lambda raw: [{k: v for k, v in json.loads(line).items() if "duration" not in k and k != "created_at"} for line in raw.splitlines()]  # noqa: E731
        assert strip(proxied) == strip(direct) and len(strip(proxied)) == 7
        chunks = [part["response"] for part in ollama.Client(host=base, verify=context).generate(model=MODEL, prompt="hi", stream=True, options={"num_predict": 4})]
        assert chunks == ["tok0 ", "tok1 ", "tok2 ", "tok3 ", ""]
        with httpx.Client(verify=context) as http:
            reply = openai.OpenAI(base_url=base + "/v1", api_key="unused", http_client=http).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
            assert reply.choices[0].message.content == "tok0 tok1 tok2 " and reply.usage.completion_tokens == 3
        import httpx2  # the anthropic SDK's own fork of httpx

        with httpx2.Client(verify=context) as http2:
            message = anthropic.Anthropic(base_url=base, api_key="unused", http_client=http2).messages.create(model=MODEL, max_tokens=3, messages=[{"role": "user", "content": "hi"}])
            assert message.content[0].text == "tok0 tok1 tok2 " and message.usage.output_tokens == 3
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA is refused
            httpx.get(base + "/api/tags")
        # the four generations above, no more (the client that refused the certificate never sent its request)
        assert Scrape(httpx.get(base + "/metrics", verify=context).text).value("ollama_client_requests_total") == 4


def test_the_in_flight_list_needs_the_scrape_token_as_the_finished_one_does(keyed: Server):
    for path in ("/-/in-flight", "/-/requests"):
        assert httpx.get(keyed.url + path).status_code == 401
        assert httpx.get(keyed.url + path, headers={"authorization": f"Bearer {GOOD}"}).status_code == 401  # a client's key is no scrape token
        assert httpx.get(keyed.url + path, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
