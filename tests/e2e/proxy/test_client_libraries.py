"""The official clients users point at the proxy (ollama, openai, anthropic from PyPI), on every API.

Each call goes through the proxy and, the same, straight to the fake: the answers must be
equal (the proxy changes nothing), and the proxy's token counters must equal the fake's own
ground truth, route by route. The fake writes what Ollama 0.32.15 writes
(tests/fake/ollama.py, tests/fake/formats.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from tests.support.harness import Server, configure_fake, fake_stats, scrape
from tests.support.payloads import TOOL_FUNCTION, TOOLS_ANTHROPIC, TOOLS_OPENAI

MODEL = "llama3.2:1b"
QUESTION = "What is the weather like in Paris today, and should I bring an umbrella?"


def text_of(answer: Any) -> Any:
    """What a caller reads from an answer, ids and timestamps aside."""
    if isinstance(answer, (list, tuple)):
        return [text_of(item) for item in answer]
    if hasattr(answer, "model_dump"):
        answer = answer.model_dump()
    if isinstance(answer, dict):
        return {k: text_of(v) for k, v in answer.items() if k not in {"id", "created", "created_at", "completed_at", "total_duration", "load_duration",
                                                                        "prompt_eval_duration", "eval_duration", "item_id", "request_id", "call_id"}
                and not (isinstance(v, str) and (v.startswith(("msg_", "resp_", "rs_", "fc_", "chatcmpl-", "cmpl-", "call_"))))}
    return answer


def calls(url: str) -> dict[str, tuple[str, Callable[[], Any]]]:
    """Every call, named, with the route it lands on."""
    native = ollama.Client(host=url)
    oai = openai.OpenAI(base_url=url + "/v1", api_key="ollama", max_retries=0)
    claude = anthropic.Anthropic(base_url=url, api_key="ollama", max_retries=0)
    messages = [{"role": "user", "content": QUESTION}]

    def anthropic_stream() -> Any:
        with claude.messages.stream(model=MODEL, max_tokens=256, messages=messages) as stream:
            texts = list(stream.text_stream)
            return texts, stream.get_final_message()

    return {
        "ollama chat": ("/api/chat", lambda: native.chat(model=MODEL, messages=messages)),
        "ollama chat stream": ("/api/chat", lambda: list(native.chat(model=MODEL, messages=messages, stream=True))),
        "ollama chat think stream": ("/api/chat", lambda: list(native.chat(model=MODEL, messages=messages, think=True, stream=True))),
        "ollama chat tools": ("/api/chat", lambda: native.chat(model=MODEL, messages=messages, tools=[TOOL_FUNCTION])),
        "ollama generate": ("/api/generate", lambda: native.generate(model=MODEL, prompt=QUESTION)),
        "ollama generate stream": ("/api/generate", lambda: list(native.generate(model=MODEL, prompt=QUESTION, stream=True))),
        "openai chat": ("/v1/chat/completions", lambda: oai.chat.completions.create(model=MODEL, messages=messages)),
        "openai chat stream": ("/v1/chat/completions", lambda: list(oai.chat.completions.create(model=MODEL, messages=messages, stream=True))),
        "openai chat stream usage": ("/v1/chat/completions", lambda: list(oai.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}))),
        "openai chat reasoning stream": ("/v1/chat/completions", lambda: list(oai.chat.completions.create(
            model=MODEL, messages=messages, stream=True, reasoning_effort="low", stream_options={"include_usage": True}))),
        "openai chat tools stream": ("/v1/chat/completions", lambda: list(oai.chat.completions.create(
            model=MODEL, messages=messages, stream=True, tools=[TOOL_FUNCTION], stream_options={"include_usage": True}))),
        "openai completions stream usage": ("/v1/completions", lambda: list(oai.completions.create(
            model=MODEL, prompt=QUESTION, stream=True, stream_options={"include_usage": True}))),
        "openai responses": ("/v1/responses", lambda: oai.responses.create(model=MODEL, input=QUESTION)),
        "openai responses stream": ("/v1/responses", lambda: list(oai.responses.create(model=MODEL, input=QUESTION, stream=True))),
        "openai responses reasoning stream": ("/v1/responses", lambda: list(oai.responses.create(model=MODEL, input=QUESTION, stream=True, reasoning={"effort": "low"}))),
        "openai responses tools": ("/v1/responses", lambda: oai.responses.create(model=MODEL, input=QUESTION, tools=TOOLS_OPENAI)),
        "anthropic messages": ("/v1/messages", lambda: claude.messages.create(model=MODEL, max_tokens=256, messages=messages)),
        "anthropic messages thinking": ("/v1/messages", lambda: claude.messages.create(
            model=MODEL, max_tokens=2048, messages=messages, thinking={"type": "enabled", "budget_tokens": 1024})),
        "anthropic messages stream": ("/v1/messages", anthropic_stream),
        "anthropic messages tools stream": ("/v1/messages", lambda: list(claude.messages.create(model=MODEL, max_tokens=256, messages=messages, tools=TOOLS_ANTHROPIC, stream=True))),
    }


def test_every_client_gets_the_same_answer_through_the_proxy_and_every_token_is_counted(fake: Server, proxy: Server):
    configure_fake(fake, token_delay=0.002, answer_delay=0, first_delta_delay=0)
    direct, proxied = calls(fake.url), calls(proxy.url)
    for name, (_, call) in direct.items():
        configure_fake(fake, reset_stats=True)
        answer = text_of(call())
        assert answer == text_of(proxied[name][1]()), f"{name}: the proxy changed the answer"
    before = scrape(proxy.url)
    configure_fake(fake, reset_stats=True)
    for _, call in proxied.values():
        call()
    truth = fake_stats(fake)["by_route"]
    after = scrape(proxy.url)
    routes = {route for route, _ in proxied.values()}
    for route in routes:
        operation = {"/api/generate": "text_completion", "/v1/completions": "text_completion"}.get(route, "chat")
        label = {"gen_ai_operation_name": operation}
        # the proxy's counters are per operation and model: compare each operation's routes together
        same = [r for r in routes if {"/api/generate": "text_completion", "/v1/completions": "text_completion"}.get(r, "chat") == operation]
        counted = after.value("ollama_generated_tokens_total", **label) - before.value("ollama_generated_tokens_total", **label)
        assert counted == sum(truth[r]["generated_tokens"] for r in same), route
    requests = httpx.get(proxy.url + "/-/requests", params={"limit": len(proxied)}).json()["requests"]
    for route in routes:
        output = [r["output_tokens"] for r in requests if r["route"] == route]
        assert sum(output) == truth[route]["generated_tokens"], (route, output, truth[route])
        inputs = [r["input_tokens"] for r in requests if r["route"] == route and r["input_tokens"] is not None]
        if route != "/v1/chat/completions":  # a chat stream without include_usage carries no input count
            assert sum(inputs) == truth[route]["prompt_tokens"], (route, inputs, truth[route])
    by_name = {entry["route"]: entry for entry in requests}
    assert by_name["/v1/messages"]["error_type"] is None and by_name["/v1/responses"]["error_type"] is None
    reasons: dict[str, set[str | None]] = {r["route"]: set() for r in requests}
    for entry in requests:
        reasons[entry["route"]].add(entry["finish_reason"])
    assert {"end_turn", "tool_use"} <= reasons["/v1/messages"], reasons
    assert "completed" in reasons["/v1/responses"], reasons
    assert reasons["/api/chat"] == {"stop"} and reasons["/v1/completions"] == {"stop"}
    assert {"stop", "tool_calls"} <= reasons["/v1/chat/completions"], reasons
    for route in ("/api/chat", "/v1/chat/completions", "/v1/responses", "/v1/messages"):
        flagged = [(r["reasoning"], r["tool_calls"]) for r in requests if r["route"] == route]
        assert (True, False) in flagged and (False, True) in flagged and (False, False) in flagged, (route, flagged)


def test_time_to_first_token_of_a_responses_or_messages_stream_waits_for_the_first_delta(fake: Server, proxy: Server):
    configure_fake(fake, token_delay=0.002, answer_delay=0, first_delta_delay=0.4)
    try:
        list(openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0).responses.create(model=MODEL, input=QUESTION, stream=True))
        with anthropic.Anthropic(base_url=proxy.url, api_key="x", max_retries=0).messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": QUESTION}]) as stream:
            list(stream.text_stream)
    finally:
        configure_fake(fake, first_delta_delay=0)
    requests = httpx.get(proxy.url + "/-/requests").json()["requests"]
    ttft = {r["route"]: r["time_to_first_token_s"] for r in requests}
    assert ttft["/v1/responses"] >= 0.4 and ttft["/v1/messages"] >= 0.4, ttft
    metrics = scrape(proxy.url)
    assert metrics.value("gen_ai_server_time_to_first_token_seconds_count") == 2
    assert metrics.value("gen_ai_server_time_to_first_token_seconds_bucket", le="0.25") == 0
    # The per-route histogram (every model together) holds the same observations.
    for route in ("/v1/responses", "/v1/messages"):
        assert metrics.value("ollama_time_to_first_token_seconds_count", http_route=route) == 1
        assert metrics.value("ollama_time_to_first_token_seconds_sum", http_route=route) >= 0.4
    assert metrics.value("ollama_time_to_first_token_seconds_sum") == pytest.approx(metrics.value("gen_ai_server_time_to_first_token_seconds_sum"))


def test_a_chat_stream_without_usage_whose_count_cannot_be_known_records_none(fake: Server, proxy: Server):
    """Without include_usage the proxy counts a token a chunk; a tool call's tokens come in one chunk, so there it records no count."""
    configure_fake(fake, token_delay=0.002, answer_delay=0)
    oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
    list(oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}], stream=True, tools=[TOOL_FUNCTION]))
    list(oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}], stream=True))
    tools, plain = httpx.get(proxy.url + "/-/requests", params={"limit": 2}).json()["requests"][::-1]
    assert (tools["tool_calls"], tools["output_tokens"], tools["input_tokens"], tools["finish_reason"]) == (True, None, None, "tool_calls")
    assert (plain["output_tokens"], plain["input_tokens"]) == (8, None)
    metrics = scrape(proxy.url)
    assert metrics.value("ollama_generated_tokens_total") == 8
    assert metrics.value("gen_ai_client_token_usage_count", gen_ai_token_type="output") == 1


def test_a_chunk_count_is_a_lower_bound_where_ollama_sends_several_tokens_in_one_chunk(fake: Server, proxy: Server):
    """An emoji is two byte-level tokens that Ollama sends as one chunk (it holds the first token's bytes until
    the character is whole): without usage, the chunk count is all the proxy can know, and it says no more than
    that (8 of 16); the native API reports eval_count, and the proxy takes it (16)."""
    model = "emoji:1b"
    configure_fake(fake, token_delay=0.002, answer_delay=0, chunk_texts={model: "🙂"})
    oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
    before = fake_stats(fake)["generated_tokens"]
    chunks = [chunk for chunk in oai.chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTION}], stream=True)
              if chunk.choices and chunk.choices[0].delta.content]
    truth = fake_stats(fake)["generated_tokens"] - before
    (streamed,) = httpx.get(proxy.url + "/-/requests", params={"limit": 1}).json()["requests"]
    assert (len(chunks), truth, streamed["output_tokens"]) == (8, 16, 8)
    answer = ollama.Client(host=proxy.url).chat(model=model, messages=[{"role": "user", "content": QUESTION}])
    (native,) = httpx.get(proxy.url + "/-/requests", params={"limit": 1}).json()["requests"]
    assert answer.eval_count == native["output_tokens"] == 16
