"""The proxy against the fake Ollama, both real servers on real sockets."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import statistics
import time

import httpx
import pytest

from tests.support.harness import PYTHON, ROOT, configure_fake, fake_stats, free_port, otel_proxy, scrape

GENERATE = {"model": "llama3.2:1b", "prompt": "why is the sky blue"}  # 5 prompt tokens at the fake
CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hello there"}]}


def stream_lines(url: str, body: dict, request_id: str | None = None) -> tuple[bytes, list[float]]:
    """The raw bytes of a streamed answer and the arrival time of each chunk."""
    headers = {"x-fake-request-id": request_id} if request_id else {}
    arrivals: list[float] = []
    data = b""
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_raw():
            arrivals.append(time.perf_counter())
            data += chunk
    return data, arrivals


def test_ndjson_stream_passes_unchanged_and_counts_what_ollama_reported(fake, proxy):
    before = fake_stats(fake)
    data, _ = stream_lines(proxy.url + "/api/generate", {**GENERATE, "options": {"num_predict": 12}}, "gen-1")
    after = fake_stats(fake)
    assert hashlib.sha256(data).hexdigest() == after["digests"]["gen-1"]
    lines = [json.loads(line) for line in data.splitlines()]
    assert len(lines) == 13 and lines[-1]["done"] is True and lines[-1]["eval_count"] == 12

    metrics = scrape(proxy.url)
    labels = {"gen_ai_operation_name": "text_completion", "gen_ai_request_model": "llama3.2:1b", "gen_ai_provider_name": "ollama"}
    assert metrics.value("ollama_generated_tokens_total", **labels) == 12
    assert metrics.value("ollama_prompt_tokens_total", **labels) == after["prompt_tokens"] - before["prompt_tokens"] == 5
    assert metrics.value("gen_ai_client_token_usage_sum", gen_ai_token_type="output", **labels) == 12
    assert metrics.value("gen_ai_client_token_usage_sum", gen_ai_token_type="input", **labels) == 5
    assert metrics.value("gen_ai_server_time_to_first_token_seconds_count", **labels) == 1
    assert metrics.value("http_server_request_duration_seconds_count", http_route="/api/generate", http_response_status_code="200") == 1
    per_model = {"gen_ai_request_model": "llama3.2:1b", "gen_ai_provider_name": "ollama"}  # Ollama's phases: per model, any API
    assert metrics.value("ollama_eval_duration_seconds_sum", **per_model) == pytest.approx(lines[-1]["eval_duration"] / 1e9)
    assert metrics.value("ollama_load_duration_seconds_sum", **per_model) == pytest.approx(lines[-1]["load_duration"] / 1e9)
    assert metrics.series("ollama_eval_duration_seconds_count") == [{"gen_ai_provider_name": "ollama", "gen_ai_request_model": "llama3.2:1b"}]
    expected_per_token = lines[-1]["eval_duration"] / 1e9 / 12
    assert metrics.value("gen_ai_server_time_per_output_token_seconds_sum", **labels) == pytest.approx(expected_per_token)
    assert metrics.value("http_server_active_requests") == 0


def test_chunks_reach_the_client_at_the_pace_ollama_sends_them(fake, proxy):
    configure_fake(fake, token_delay=0.05)
    _, arrivals = stream_lines(proxy.url + "/api/chat", {**CHAT, "options": {"num_predict": 10}})
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    assert len(arrivals) >= 10  # not merged into one burst
    assert statistics.median(gaps) > 0.03
    assert arrivals[-1] - arrivals[0] > 0.4  # spread over the generation, as Ollama sent it


def test_openai_stream_counts_the_usage_chunk(fake, proxy):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 6}
    data, _ = stream_lines(proxy.url + "/v1/chat/completions", body, "v1-usage")
    assert hashlib.sha256(data).hexdigest() == fake_stats(fake)["digests"]["v1-usage"]
    assert data.endswith(b"data: [DONE]\n\n")
    metrics = scrape(proxy.url)
    labels = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "llama3.2:1b"}
    assert metrics.value("ollama_generated_tokens_total", **labels) == 6
    assert metrics.value("ollama_prompt_tokens_total", **labels) == 2
    assert metrics.value("gen_ai_server_time_to_first_token_seconds_count", **labels) == 1


def test_openai_stream_without_usage_counts_content_chunks_and_no_input(fake, proxy):
    body = {"model": "llama3.2:1b", "prompt": "once upon a time", "stream": True, "max_tokens": 7}
    stream_lines(proxy.url + "/v1/completions", body)
    metrics = scrape(proxy.url)
    labels = {"gen_ai_operation_name": "text_completion"}
    assert metrics.value("ollama_generated_tokens_total", **labels) == 7
    assert metrics.series("ollama_prompt_tokens_total") == []  # never invented


def test_non_streaming_calls_and_embeddings_count_tokens_but_no_time_to_first_token(fake, proxy):
    plain = httpx.post(proxy.url + "/api/generate", json={**GENERATE, "stream": False}, timeout=30).json()
    assert plain["done"] is True and plain["eval_count"] == 8
    chat = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30).json()
    assert chat["usage"]["completion_tokens"] == 8
    embed = httpx.post(proxy.url + "/api/embed", json={"model": "nomic-embed-text:latest", "input": ["a b c", "d e"]}, timeout=30).json()
    assert embed["prompt_eval_count"] == 5
    httpx.post(proxy.url + "/v1/embeddings", json={"model": "nomic-embed-text:latest", "input": "one two three four"}, timeout=30)

    metrics = scrape(proxy.url)
    assert metrics.series("gen_ai_server_time_to_first_token_seconds_count") == []
    assert metrics.value("ollama_generated_tokens_total") == 16
    assert metrics.value("ollama_prompt_tokens_total", gen_ai_operation_name="embeddings") == 9
    assert metrics.value("ollama_prompt_tokens_total", gen_ai_operation_name="text_completion") == 5
    assert metrics.value("gen_ai_server_request_duration_seconds_count", gen_ai_operation_name="embeddings") == 2


def test_ollama_error_answers_reach_the_client_unchanged_and_are_counted(fake, proxy):
    missing = httpx.post(proxy.url + "/api/generate", json={"model": "no-such-model", "prompt": "x"})
    direct = httpx.post(fake.url + "/api/generate", json={"model": "no-such-model", "prompt": "x"})
    assert (missing.status_code, missing.content) == (direct.status_code, direct.content) == (404, direct.content)
    assert missing.json() == {"error": "model 'no-such-model' not found"}  # server/routes.go GenerateHandler, getExistingName failed
    garbage = httpx.post(proxy.url + "/api/chat", content=b"not json at all", headers={"content-type": "application/json"})
    assert garbage.status_code == 400 and "invalid character" in garbage.json()["error"]
    openai_missing = httpx.post(proxy.url + "/v1/chat/completions", json={"model": "ghost", "messages": [{"role": "user", "content": "x"}]})
    assert openai_missing.json()["error"]["type"] == "not_found_error"

    metrics = scrape(proxy.url)
    assert metrics.value("http_server_request_duration_seconds_count", http_route="/api/generate", http_response_status_code="404") == 1
    assert metrics.value("http_server_request_duration_seconds_count", http_route="/api/chat", http_response_status_code="400") == 1
    assert metrics.series("http_server_request_duration_seconds_count", error_type="404") == []  # a client error is not a server error
    # Made-up names get no label of their own.
    assert {s["gen_ai_request_model"] for s in metrics.series("gen_ai_server_request_duration_seconds_count")} <= {"other", "unknown"}


def test_unreachable_ollama_gives_a_502_that_names_it_within_the_connect_timeout():
    closed = f"http://127.0.0.1:{free_port()}"
    with otel_proxy(closed, "--connect-timeout", "2") as proxy:
        started = time.perf_counter()
        answer = httpx.post(proxy.url + "/api/chat", json=CHAT, timeout=10)
        assert time.perf_counter() - started < 2.5
        assert answer.status_code == 502
        assert closed in answer.json()["error"]
        assert httpx.get(proxy.url + "/-/ready").status_code == 503
        assert httpx.get(proxy.url + "/-/healthy").status_code == 200
        metrics = scrape(proxy.url)
        assert metrics.value("http_server_request_duration_seconds_count", error_type="connect_error", http_response_status_code="502") == 1
        assert metrics.value("http_server_active_requests") == 0


def test_ollama_dying_mid_stream_ends_the_client_response_and_is_recorded(fake, proxy):
    started = time.perf_counter()
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", proxy.url + "/api/generate", json={"model": "fault-reset", "prompt": "x"}, timeout=10) as answer:
            for _ in answer.iter_raw():
                pass
    assert time.perf_counter() - started < 5
    metrics = scrape(proxy.url)
    assert metrics.value("http_server_request_duration_seconds_count", error_type="upstream_closed") == 1
    assert metrics.value("http_server_active_requests") == 0
    assert "Traceback" not in proxy.log()


def test_client_disconnect_cancels_upstream_within_a_second(fake, proxy):
    configure_fake(fake, token_delay=0.05)
    disconnects_before = fake_stats(fake)["disconnects"]
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        body = json.dumps({**GENERATE, "options": {"num_predict": 400}}).encode()
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert b"200 OK" in sock.recv(4096)
    closed_at = time.perf_counter()
    while fake_stats(fake)["disconnects"] == disconnects_before:
        assert time.perf_counter() - closed_at < 1.0, "the upstream request was not cancelled within a second"
        time.sleep(0.02)
    time.sleep(0.1)
    metrics = scrape(proxy.url)
    assert metrics.value("http_server_active_requests") == 0
    assert metrics.value("http_server_request_duration_seconds_count", error_type="client_disconnected") == 1


def test_a_stalled_stream_is_cut_at_the_idle_timeout(fake):
    with otel_proxy(fake.url, "--idle-timeout", "1") as proxy:
        started = time.perf_counter()
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream("POST", proxy.url + "/api/generate", json={"model": "fault-stall", "prompt": "x"}, timeout=10) as answer:
                for _ in answer.iter_raw():
                    pass
        assert 0.9 < time.perf_counter() - started < 3
        assert scrape(proxy.url).value("http_server_request_duration_seconds_count", error_type="idle_timeout") == 1


def test_broken_streams_are_counted_as_invalid_responses(fake, proxy):
    malformed = httpx.post(proxy.url + "/api/generate", json={"model": "fault-malformed", "prompt": "x"})
    assert malformed.content.endswith(b'"response":\n')  # passed through untouched
    empty = httpx.post(proxy.url + "/api/generate", json={"model": "fault-nobody", "prompt": "x"})
    assert (empty.status_code, empty.content) == (200, b"")
    metrics = scrape(proxy.url)
    assert metrics.value("http_server_request_duration_seconds_count", error_type="invalid_response") == 2


def test_request_bodies_stream_through_without_being_held(fake, proxy):
    size = 64 << 20
    block = os.urandom(1 << 20)
    digest = hashlib.sha256(block * 64).hexdigest()

    def body():
        for _ in range(size // len(block)):
            yield block

    before = fake_stats(fake)["blob_bytes"]
    answer = httpx.post(proxy.url + f"/api/blobs/sha256:{digest}", content=body(), timeout=60)
    assert answer.status_code == 201
    assert fake_stats(fake)["blob_bytes"] - before == size
    metrics = scrape(proxy.url)
    assert metrics.value("http_server_request_duration_seconds_count", http_route="/api/blobs/{digest}") == 1
    assert 0 < metrics.value("process_resident_memory_bytes") < 200 << 20  # far less than the body's 64 MiB twice over


def test_headers_query_and_methods_are_forwarded_end_to_end(fake, proxy):
    answer = httpx.put(
        proxy.url + "/fake/echo?a=1&b=two",
        content=b"xyz",
        headers={"x-custom": "kept", "connection": "keep-alive, x-secret", "x-secret": "hop", "te": "trailers"},
    )
    echoed = answer.json()
    forwarded = {name.lower(): value for name, value in echoed["headers"]}
    assert (echoed["method"], echoed["query"], echoed["body_bytes"]) == ("PUT", "a=1&b=two", 3)
    assert forwarded["x-custom"] == "kept"
    assert "x-secret" not in forwarded and "te" not in forwarded
    assert forwarded["host"] == fake.url.removeprefix("http://")
    assert answer.headers["x-fake-answer"] == "yes"
    assert "x-hop" not in answer.headers
    head = httpx.head(proxy.url + "/")
    assert head.status_code == 200 and head.content == b""
    assert httpx.get(proxy.url + "/").text == "Ollama is running"
    scraped = scrape(proxy.url)
    assert scraped.value("http_server_request_duration_seconds_count", http_route="other", http_request_method="PUT") == 1
    assert scraped.value("http_server_request_duration_seconds_count", http_route="/", http_request_method="HEAD") == 1


def test_model_label_is_bounded(fake):
    names = [f"custom-{index}:latest" for index in range(6)]
    configure_fake(fake, answers={name: "ok" for name in names})
    with otel_proxy(fake.url, "--max-models", "3") as proxy:
        for name in names + [f"made-up-{i}" for i in range(20)]:
            httpx.post(proxy.url + "/api/generate", json={"model": name, "prompt": "x", "stream": False}, timeout=30)
        labels = {s["gen_ai_request_model"] for s in scrape(proxy.url).series("gen_ai_server_request_duration_seconds_count")}
    assert labels == set(names[:3]) | {"other"}


def test_recent_requests_list_finished_requests_without_text(fake, proxy):
    secret = "zebra-crossing-secret"
    stream_lines(proxy.url + "/api/generate", {"model": "llama3.2:1b", "prompt": f"tell me about {secret}"})
    httpx.post(proxy.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": secret, "stream": False}, timeout=30)
    listing = httpx.get(proxy.url + "/-/requests").json()
    newest, older = listing["requests"][0], listing["requests"][1]
    assert (newest["stream"], older["stream"]) == (False, True)
    assert older["route"] == "/api/generate" and older["status"] == 200 and older["model"] == "llama3.2:1b"
    assert older["output_tokens"] == 8 and older["input_tokens"] == 4
    assert older["time_to_first_token_s"] > 0 and newest["time_to_first_token_s"] is None
    assert older["tokens_per_second"] == pytest.approx(8 / older["eval_s"])
    assert len(older["trace_id"]) == 32
    assert secret not in json.dumps(listing) and secret not in scrape(proxy.url).text


def test_metrics_is_a_plain_200_that_promtool_accepts(fake, proxy):
    stream_lines(proxy.url + "/api/chat", CHAT)
    answer = httpx.get(proxy.url + "/metrics", follow_redirects=False)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    from tests.support.harness import require_tool
    import subprocess

    check = subprocess.run([require_tool("promtool"), "check", "metrics"], input=answer.content, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert check.stdout.strip() == b"" and check.stderr.strip() == b""


def test_duration_buckets_are_the_twenty_asked_for(fake, proxy):
    httpx.get(proxy.url + "/api/tags")
    bounds = [float(s["le"]) for s in scrape(proxy.url).series("http_server_request_duration_seconds_bucket", http_route="/api/tags")]
    asked_for = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 5, 7.5, 10, 15, 30, 45, 60, 90, 120, 180]
    assert bounds == asked_for + [float("inf")]


def test_cold_loads_are_counted(fake):
    configure_fake(fake, unload=True, token_delay=0.01, answer_delay=0)
    with otel_proxy(fake.url, "--ps-interval", "0.2") as proxy:
        time.sleep(0.5)  # the proxy has read /api/ps: nothing resident
        for _ in range(3):
            httpx.post(proxy.url + "/api/generate", json={**GENERATE, "stream": False}, timeout=30)
        metrics = scrape(proxy.url)
    assert metrics.value("ollama_model_loads_total", gen_ai_request_model="llama3.2:1b", ollama_load_reason="cold") == 1
    assert metrics.value("ollama_model_loads_total") == 1


def test_ready_reports_the_ollama_version(fake, proxy):
    ready = httpx.get(proxy.url + "/-/ready")
    assert ready.status_code == 200 and ready.json()["ollama_version"] == "0.32.15"


def test_cli_flags_win_over_environment_and_default_to_loopback(monkeypatch):
    from otel_proxy.__main__ import settings_from

    monkeypatch.setenv("OTEL_PROXY_PORT", "9999")
    monkeypatch.setenv("OLLAMA_UPSTREAM", "http://gpu-box:11434")
    monkeypatch.delenv("OTEL_PROXY_HOST", raising=False)
    settings = settings_from(["--port", "8123"])
    assert (settings.host, settings.port, settings.upstream) == ("127.0.0.1", 8123, "http://gpu-box:11434")
    monkeypatch.setenv("OTEL_PROXY_PORT", "eighty")
    with pytest.raises(SystemExit, match="OTEL_PROXY_PORT"):
        settings_from([])


def test_python_dash_m_and_console_script_both_start(fake):
    import subprocess

    help_text = subprocess.run([PYTHON, "-m", "otel_proxy", "--help"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "--upstream" in help_text and "OLLAMA_UPSTREAM" in help_text
    script = os.path.join(os.path.dirname(PYTHON), "otel-proxy")
    assert subprocess.run([script, "--help"], capture_output=True, check=False).returncode == 0


def test_a_chunked_request_body_read_whole_goes_on_with_its_length(fake, proxy):
    def pieces():
        yield b'{"x": '
        yield b'"chunked"}'

    echoed = httpx.post(proxy.url + "/fake/echo", content=pieces()).json()  # httpx sends a generator chunked
    forwarded = {name.lower(): value for name, value in echoed["headers"]}
    assert echoed["body_bytes"] == 16
    assert forwarded["content-length"] == "16" and "transfer-encoding" not in forwarded
    plain = httpx.get(proxy.url + "/fake/echo").json()
    assert "content-length" not in {name.lower() for name, _ in plain["headers"]}  # no body, no framing invented


def test_recent_requests_say_whether_their_trace_was_recorded(fake, proxy):
    httpx.post(proxy.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": "x", "stream": False}, timeout=30)
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    httpx.post(proxy.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": "x", "stream": False}, headers={"traceparent": caller}, timeout=30)
    sampled, unsampled = httpx.get(proxy.url + "/-/requests").json()["requests"][:2]
    assert (unsampled["trace_sampled"], sampled["trace_sampled"]) == (False, True)  # no exporter here: only the caller's sampled trace
    assert sampled["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


def test_a_request_counts_as_active_while_it_streams_and_its_duration_ends_at_the_last_byte(fake, proxy):
    """Recording is deferred to the bookkeeper: a scrape must still see every request as it is."""
    configure_fake(fake, token_delay=0.1)
    with httpx.stream("POST", proxy.url + "/api/generate", json={**GENERATE, "options": {"num_predict": 5}}, timeout=30) as answer:
        started = time.perf_counter()
        chunks = answer.iter_raw()
        assert json.loads(next(chunks).splitlines()[0])["done"] is False
        assert scrape(proxy.url).value("http_server_active_requests", http_request_method="POST") == 1
        rest = b"".join(chunks)
        assert json.loads(rest.splitlines()[-1])["done"] is True
        streamed = time.perf_counter() - started
    metrics = scrape(proxy.url)  # read at once: the request ended just now
    assert metrics.value("http_server_active_requests", http_request_method="POST") == 0
    duration = metrics.value("http_server_request_duration_seconds_sum", http_route="/api/generate")
    # Four more tokens at 0.1 s after the first chunk: the duration runs to the last byte, not to a later recording.
    assert 0.4 <= duration <= streamed + 0.2


def test_client_spans_made_by_the_proxy_still_carry_the_trace_to_ollama(fake):
    """The proxy's client spans with no exporter (spans not recorded): Ollama still gets a
    traceparent naming the caller's trace and a new span of the proxy's, in place of the caller's."""
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    with otel_proxy(fake.url) as proxy:
        echoed = httpx.get(proxy.url + "/fake/echo", headers={"traceparent": caller, "baggage": "k=v"}).json()
        log = proxy.log()
    sent = [value for name, value in echoed["headers"] if name.lower() == "traceparent"]
    assert len(sent) == 1
    version, trace_id, span_id, flags = sent[0].split("-")
    assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "00")
    assert span_id not in ("b7ad6b7169203331", "0" * 16)
    assert ("baggage", "k=v") in [(name.lower(), value) for name, value in echoed["headers"]]  # passed through
    assert "opentelemetry-instrumentation-httpx" not in log


def test_client_spans_choice_is_checked_and_falls_back_where_only_the_instrumentation_can(fake, monkeypatch):
    from otel_proxy.__main__ import settings_from

    assert settings_from([]).client_spans == "proxy"
    monkeypatch.setenv("OTEL_PROXY_CLIENT_SPANS", "httpx")
    assert settings_from([]).client_spans == "httpx"
    with pytest.raises(SystemExit):
        settings_from(["--client-spans", "auto"])
    monkeypatch.delenv("OTEL_PROXY_CLIENT_SPANS")
    with otel_proxy(fake.url, env={"OTEL_PYTHON_HTTPX_EXCLUDED_URLS": "127.0.0.1"}) as proxy:
        assert httpx.get(proxy.url + "/api/version").status_code == 200
        log = proxy.log()
    assert "client spans are made by opentelemetry-instrumentation-httpx: OTEL_PYTHON_HTTPX_EXCLUDED_URLS is set" in log


def test_exported_client_spans_come_from_the_proxy_or_on_request_from_the_instrumentation(fake):
    printed = {}
    for extra in ((), ("--client-spans", "httpx")):
        with otel_proxy(fake.url, *extra, env={"OTEL_TRACES_EXPORTER": "console"}) as proxy:
            assert httpx.get(proxy.url + "/api/version").status_code == 200
        printed[extra] = proxy.log()  # after the proxy stopped: the batch processor printed its spans on shutdown
    by_proxy, by_instrumentation = printed.values()
    assert "client spans to Ollama are made by the proxy (--client-spans proxy)" in by_proxy
    assert "client spans to Ollama are made by opentelemetry-instrumentation-httpx (--client-spans httpx)" in by_instrumentation
    ours, theirs = (next(span for span in _printed_spans(log) if span["kind"] == "SpanKind.CLIENT") for log in printed.values())
    assert ours["name"] == theirs["name"] == "GET"
    assert ours["attributes"] == theirs["attributes"]
    assert ours["attributes"]["http.url"] == fake.url + "/api/version"


def _printed_spans(log: str) -> list[dict]:
    """The spans the console exporter printed (one JSON object each) among the log's lines."""
    decoder = json.JSONDecoder()
    spans, at = [], log.find('{\n    "name"')
    while at != -1:
        span, end = decoder.raw_decode(log, at)
        spans.append(span)
        at = log.find('{\n    "name"', end)
    return spans


def test_transcriptions_and_web_search_and_fetch_have_their_own_routes_and_are_not_generations(fake, proxy):
    from otel_proxy import ollama

    for path in ("/v1/audio/transcriptions", "/api/experimental/web_search", "/api/experimental/web_fetch"):
        assert ollama.route_of(path) == path and path not in ollama.OPERATIONS
        direct = httpx.post(fake.url + path, files={"file": ("a.wav", b"RIFF0000WAVE")})
        proxied = httpx.post(proxy.url + path, files={"file": ("a.wav", b"RIFF0000WAVE")})
        assert (proxied.status_code, proxied.text) == (direct.status_code, direct.text)
    scraped = scrape(proxy.url)
    for path in ("/v1/audio/transcriptions", "/api/experimental/web_search", "/api/experimental/web_fetch"):
        assert scraped.value("http_server_request_duration_seconds_count", http_route=path) == 1
    assert scraped.value("gen_ai_server_request_duration_seconds_count") == 0
    assert ollama.OPERATIONS["/v1/responses"] == ollama.OPERATIONS["/v1/messages"] == "chat"
