"""Rates only where the time is known: tokens per second and time per output token, API by API, streaming and not.

Ollama's native APIs report ``eval_duration``; a streamed answer on the OpenAI and Anthropic
APIs is timed from its first output to its end. A non-streaming answer on those APIs arrives
in one piece with no duration at all: no rate can be computed, and none may be recorded.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.harness import fake_ollama, otel_proxy, scrape

TOKEN_DELAY = 0.015  # 15 ms a token: about 67 tokens a second
MODEL = "llama3.2:1b"
TOKENS = 8  # the fake's natural answer length, so that every API gives exactly this many


def body(route: str, stream: bool) -> dict:
    if route in ("/api/generate", "/v1/completions"):
        limit = {"options": {"num_predict": TOKENS}} if route == "/api/generate" else {"max_tokens": TOKENS}
        return {"model": MODEL, "prompt": "hi", "stream": stream, **limit}
    messages = [{"role": "user", "content": "hi"}]
    if route == "/v1/responses":
        return {"model": MODEL, "input": "hi", "stream": stream, "max_output_tokens": TOKENS}
    if route == "/v1/messages":
        return {"model": MODEL, "messages": messages, "stream": stream, "max_tokens": TOKENS}
    limit = {"options": {"num_predict": TOKENS}} if route == "/api/chat" else {"max_tokens": TOKENS}
    return {"model": MODEL, "messages": messages, "stream": stream, **limit}


CASES = [(route, stream) for route in ("/api/generate", "/api/chat", "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages") for stream in (True, False)]
TIMED = {"/api/generate", "/api/chat"}  # eval_duration, streaming or not


@pytest.fixture(scope="module")
def proxy():
    with fake_ollama(token_delay=TOKEN_DELAY, load_delay=0) as fake, otel_proxy(fake.url) as proxy:
        yield proxy


@pytest.mark.parametrize(("route", "stream"), CASES)
def test_a_rate_is_recorded_only_where_the_generation_time_is_known(proxy, route, stream):
    before = scrape(proxy.url).value("gen_ai_server_time_per_output_token_seconds_count")
    with httpx.stream("POST", proxy.url + route, json=body(route, stream), timeout=30) as answer:
        assert answer.status_code == 200
        answer.read()
    entry = httpx.get(proxy.url + "/-/requests").json()["requests"][0]
    assert entry["route"] == route and entry["output_tokens"] == TOKENS
    metrics = scrape(proxy.url)
    recorded = metrics.value("gen_ai_server_time_per_output_token_seconds_count") - before
    if route in TIMED or stream:
        # Ollama's eval_duration, or first output to the end: 15 ms a token, give or take the machine's jitter
        assert entry["tokens_per_second"] == pytest.approx(1 / TOKEN_DELAY, rel=0.35), entry
        assert recorded == 1
    else:
        assert entry["tokens_per_second"] is None, entry  # not 20,000 tokens/s over the last chunk's microseconds
        assert recorded == 0
