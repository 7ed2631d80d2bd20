"""The benchmarks' load client counts what the server streamed, as httpx reads it.

bench/proxy_overhead.py's figures are only as good as this client's parsing: every
streamed token counted once, the first chunk timed, errors counted and survived.
"""

from __future__ import annotations

import httpx

from bench.loadclient import run_measured

GENERATE = {"model": "llama3.2:1b", "prompt": "count", "options": {"num_predict": 9}}
CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "count"}], "stream": True, "max_tokens": 7, "stream_options": {"include_usage": True}}


def markers_httpx_reads(url: str, body: dict, marker: bytes) -> int:
    with httpx.stream("POST", url, json=body, timeout=10) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw()).count(marker)


def test_streamed_ndjson_and_sse_are_counted_as_httpx_reads_them(fake):
    for path, body, marker in (("/api/generate", GENERATE, b"\n"), ("/v1/chat/completions", CHAT, b"data: ")):
        expected = markers_httpx_reads(fake.url + path, body, marker)
        assert expected > 7
        result = run_measured(fake.url, path, body, 3, 4, marker)
        assert (result.requests, result.errors) == (12, 0)
        assert result.lines == 12 * expected
        assert all(0 < ttft < result.seconds for ttft in result.ttft)


def test_a_whole_body_with_a_content_length_is_counted(fake):
    body = {**GENERATE, "stream": False}
    response = httpx.post(fake.url + "/api/generate", json=body, timeout=10)
    assert "content-length" in response.headers
    result = run_measured(fake.url, "/api/generate", body, 2, 3, b'"done"')
    assert (result.requests, result.errors, result.lines) == (6, 0, 6 * response.content.count(b'"done"'))


def test_an_error_answer_is_counted_and_the_run_goes_on(fake):
    result = run_measured(fake.url, "/api/generate", {**GENERATE, "model": "no-such-model"}, 2, 3)
    assert (result.requests, result.errors) == (0, 6)


def test_each_request_s_latency_largest_gap_and_tokens(fake):
    """The gap is between two reads of the body: the wait for the first (the answer delay) is not one."""
    from tests.support.harness import configure_fake

    expected = markers_httpx_reads(fake.url + "/api/generate", GENERATE, b"\n")
    configure_fake(fake, token_delay=0.01, answer_delay=0.3)
    try:
        result = run_measured(fake.url, "/api/generate", GENERATE, 2, 2, b"\n")
    finally:
        configure_fake(fake, token_delay=0.01, answer_delay=0)
    assert result.marks == [expected] * 4
    assert all(ttft >= 0.3 for ttft in result.ttft)
    assert all(0.009 <= gap < 0.3 for gap in result.max_gap), result.max_gap  # 10 ms a token; never the answer delay
    assert all(latency >= ttft + 0.009 * (expected - 2) for latency, ttft in zip(result.latency, result.ttft))
    assert result.percentile(50, "latency") > result.percentile(50)
