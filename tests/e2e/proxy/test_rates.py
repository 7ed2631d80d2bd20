"""Rates only where the generation time is known, and a time to first token for every streamed answer: API by API,
streaming and not, for text, a tool call, and text then a tool call (an agent's turn), and for bodies past 1 MiB.

Ollama's native APIs report ``eval_duration``; a streamed answer on the OpenAI and Anthropic APIs is timed from its
first output to its end. A non-streaming answer on those APIs arrives in one piece with no duration, and an answer
that opens with a tool call was generated whole before its first byte (Ollama holds a call back until it is
complete): no rate can be computed for either, and none may be recorded. Every recorded rate is held to the fake's
truth (its tokens over the time it spent generating them).
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.harness import configure_fake, fake_ollama, fake_stats, otel_proxy, scrape
from tests.support.payloads import TOOL_FUNCTION, TOOLS_ANTHROPIC, TOOLS_OPENAI

TOKEN_DELAY = 0.015  # 15 ms a token: about 67 tokens a second
MODEL = "llama3.2:1b"
TOKENS = 8  # the fake's natural answer length, so that every API gives exactly this many
PREAMBLE = 4  # text tokens before the call, in a mixed answer
TIMED = {"/api/generate", "/api/chat"}  # eval_duration, streaming or not
TOOLS = {"/api/chat": [TOOL_FUNCTION], "/v1/chat/completions": [TOOL_FUNCTION], "/v1/responses": TOOLS_OPENAI, "/v1/messages": TOOLS_ANTHROPIC}


def body(route: str, stream: bool, shape: str = "text", padding: str = "hi") -> dict:
    """The request as each API's clients write it, ``stream`` last (as Claude Code writes it), tools offered for a call."""
    tools = {"tools": TOOLS[route]} if shape != "text" else {}
    usage = {"stream_options": {"include_usage": True}} if route.startswith("/v1/c") and stream else {}  # else the counts are not all known
    if route in ("/api/generate", "/v1/completions"):
        limit = {"options": {"num_predict": TOKENS}} if route == "/api/generate" else {"max_tokens": TOKENS}
        return {"model": MODEL, "prompt": padding, **limit, **usage, "stream": stream}
    messages = [{"role": "user", "content": padding}]
    if route == "/v1/responses":
        return {"model": MODEL, "input": padding, **tools, **({"max_output_tokens": TOKENS} if shape == "text" else {}), "stream": stream}
    if route == "/v1/messages":
        return {"model": MODEL, "system": [{"type": "text", "text": "You are a coding agent."}], "messages": messages, **tools, "max_tokens": 32000 if shape != "text" else TOKENS, "stream": stream}
    limit = {"options": {"num_predict": TOKENS}} if route == "/api/chat" else {"max_tokens": TOKENS}
    return {"model": MODEL, "messages": messages, **tools, **(limit if shape == "text" else {}), **usage, "stream": stream}


CASES = [(route, stream, shape) for route in ("/api/generate", "/api/chat", "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages")
         for stream in (True, False) for shape in (("text", "tool_call", "mix") if route in TOOLS else ("text",))]
FAMILIES = ("gen_ai_server_time_per_output_token_seconds_count", "gen_ai_server_time_to_first_token_seconds_count", "ollama_time_to_tool_call_seconds_count")


@pytest.fixture(scope="module")
def served():
    with fake_ollama(token_delay=TOKEN_DELAY, load_delay=0) as fake, otel_proxy(fake.url) as proxy:
        yield fake, proxy


def send(proxy_url: str, route: str, payload: dict) -> dict:
    """The request sent as bytes in the body's own key order; its /-/requests entry."""
    with httpx.stream("POST", proxy_url + route, content=json.dumps(payload).encode(), headers={"content-type": "application/json"}, timeout=60) as answer:
        assert answer.status_code == 200, answer.read()
        answer.read()
    return httpx.get(proxy_url + "/-/requests").json()["requests"][0]


@pytest.mark.parametrize(("route", "stream", "shape"), CASES)
def test_a_rate_is_recorded_only_where_the_generation_time_is_known(served, route, stream, shape):
    fake, proxy = served
    configure_fake(fake, reset_stats=True, tool_preamble_tokens=PREAMBLE if shape == "mix" else 0)
    before = {family: scrape(proxy.url).value(family) for family in FAMILIES}
    entry = send(proxy.url, route, body(route, stream, shape))
    truth = fake_stats(fake)["by_model"][MODEL]
    assert entry["route"] == route and entry["output_tokens"] == truth["generated_tokens"] > 0
    assert entry["tool_calls"] is (shape != "text") and entry["stream"] is stream
    metrics = scrape(proxy.url)
    recorded = {family: metrics.value(family) - before[family] for family in FAMILIES}
    rated = route in TIMED or (stream and shape != "tool_call")
    if rated:
        # Ollama's eval_duration, or first output to the end: the fake's own tokens over its generation time
        assert entry["tokens_per_second"] == pytest.approx(truth["generated_tokens"] / truth["eval_seconds"], rel=0.25), (entry, truth)
    else:
        assert entry["tokens_per_second"] is None, entry  # not 68,000 tokens/s over the closing events' microseconds
    assert recorded["gen_ai_server_time_per_output_token_seconds_count"] == rated
    # every streamed answer has a time to its first output, which says what it was; a call first is told apart
    first = ("tool_call" if shape == "tool_call" else "text") if stream else None
    assert entry["first_output"] == first and (entry["time_to_first_token_s"] is not None) is stream, entry
    assert recorded["gen_ai_server_time_to_first_token_seconds_count"] == (stream and shape != "tool_call")
    assert recorded["ollama_time_to_tool_call_seconds_count"] == (stream and shape == "tool_call")


@pytest.mark.parametrize("route", ["/api/generate", "/api/chat", "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"])
@pytest.mark.parametrize("stream", [True, False])
def test_a_body_past_one_mib_with_stream_last_is_timed_as_it_streamed(served, route, stream):
    """A long agent session's turn, 1.5 MiB with ``"stream"`` as its last key, past the first MiB the proxy reads."""
    fake, proxy = served
    configure_fake(fake, reset_stats=True, tool_preamble_tokens=0)
    payload = body(route, stream, padding="word " * (1_536 * 1024 // 5))
    assert len(json.dumps(payload)) > 1_536 * 1024 and list(payload)[-1] == "stream"
    entry = send(proxy.url, route, payload)
    truth = fake_stats(fake)["by_model"][MODEL]
    assert entry["stream"] is stream and (entry["time_to_first_token_s"] is not None) is stream, entry
    assert (entry["input_tokens"], entry["output_tokens"]) == (truth["prompt_tokens"], truth["generated_tokens"])
    if route in TIMED or stream:
        assert entry["tokens_per_second"] == pytest.approx(truth["generated_tokens"] / truth["eval_seconds"], rel=0.25), (entry, truth)
    else:
        assert entry["tokens_per_second"] is None
