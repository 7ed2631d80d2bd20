"""The prompt cache through the proxy, against the fake's runner (its cache held to llama.cpp's own server by
tests/fake/test_prompt_cache.py): three agent-like conversations sharing one model on every API.

Each conversation resends its whole history every turn (a shared system prompt and tools, its own first question, then
the model's tool calls and their results), six turns each, taking turns on Ollama's one slot (OLLAMA_NUM_PARALLEL's
default), so that each turn's cache comes back from llama-server's RAM prompt cache. Midway another client reloads the
model with another num_ctx (and the conversations' next turns reload it back); later one conversation rewrites an early
tool result. Every request's cached tokens must be the runner's, its prompt rate the new tokens' (native API), and
exactly the turns that read their prompt again named, with their cause.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.harness import configure_fake, fake_ollama, otel_proxy, scrape
from tests.support.payloads import TOOL_FUNCTION, TOOLS_ANTHROPIC, TOOLS_OPENAI

MODEL = "llama3.2:1b"
# A system prompt shorter than half of each conversation: a turn that takes the slot from another conversation keeps
# less than half of what the slot held, so llama-server saves that to its RAM cache and restores its own (a longer one
# is the next test's case).
SYSTEM = "You are a coding agent working in a large repository. Follow its conventions and run its tests."
QUESTIONS = {name: f"conversation {name}: " + f"look into the failing test number {index} and the module it covers " * 8
             for index, name in enumerate("ABC")}
RESULT = "the file holds these lines of code " * 6
ROUTES = ("/api/chat", "/v1/chat/completions", "/v1/responses", "/v1/messages")
TURNS = 6
RELOAD_BEFORE = 4  # the turn whose every conversation finds the runner reloaded
EDITED = ("B", 5)  # the conversation and turn that rewrote its first tool result


def request(route: str, history: list, stream: bool, system: str = SYSTEM) -> dict:
    """A turn as each API's SDK writes it (Anthropic's: the system prompt and tools after the messages)."""
    if route == "/v1/messages":
        return {"max_tokens": 4096, "messages": history, "model": MODEL, "stream": stream, "system": system, "tools": TOOLS_ANTHROPIC}
    if route == "/v1/responses":
        return {"model": MODEL, "instructions": system, "input": history, "tools": TOOLS_OPENAI, "stream": stream}
    return {"model": MODEL, "messages": [{"role": "system", "content": system}, *history], "tools": [TOOL_FUNCTION], "stream": stream}


def first_message(route: str, text: str) -> dict:
    return {"role": "user", "content": text}


def answered(route: str, answer: dict) -> list:
    """What the agent appends after the model's answer (a tool call): the call as the API returned it, then its result."""
    if route == "/v1/messages":
        call = next(block for block in answer["content"] if block["type"] == "tool_use")
        return [{"role": "assistant", "content": answer["content"]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": RESULT}]}]
    if route == "/v1/responses":
        call = next(item for item in answer["output"] if item["type"] == "function_call")
        return [call, {"type": "function_call_output", "call_id": call["call_id"], "output": RESULT}]
    message = answer["message"] if route == "/api/chat" else answer["choices"][0]["message"]
    return [message, {"role": "tool", "content": RESULT, "tool_call_id": message["tool_calls"][0].get("id", "")}]


def rewrite_first_result(route: str, history: list) -> None:
    """The agent shortens its first tool result (message 3 of the history, after the question and the call)."""
    first = history[2]
    if route == "/v1/messages":
        first["content"][0]["content"] = "shortened"
    elif route == "/v1/responses":
        first["output"] = "shortened"
    else:
        first["content"] = "shortened"


@pytest.fixture(scope="module")
def runner():
    with fake_ollama(token_delay=0.002, load_delay=0.3, version="0.33.3") as fake:
        yield fake


@pytest.fixture
def served(runner):
    """The module's fake, its runners unloaded and one slot (Ollama's default), behind a fresh proxy: the proxy's view of
    what is loaded starts from /api/ps as it is now. Unloaded under a proxy already running, the model the last test
    left loaded stays in its view until its next /api/ps read, and a first turn that raced that read was taken for a
    reload."""
    configure_fake(runner, parallel=1, unload=True, reset_stats=True)
    with otel_proxy(runner.url, "--ps-interval", "0.5") as proxy:
        yield runner, proxy


@pytest.mark.parametrize("route", ROUTES)
def test_every_turns_cached_tokens_are_the_runners_and_only_the_turns_that_lost_the_cache_are_named(served, route):
    fake, proxy = served
    histories = {name: [first_message(route, question)] for name, question in QUESTIONS.items()}
    with httpx.Client(base_url=proxy.url, timeout=60) as client:
        for turn in range(1, TURNS + 1):
            if turn == RELOAD_BEFORE:  # another client, another num_ctx: the runner reloads, and each conversation's next turn back
                client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_ctx": 8192}}).raise_for_status()
            for name, history in histories.items():
                if (name, turn) == EDITED:
                    rewrite_first_result(route, history)
                answer = client.post(route, json=request(route, history, stream=False))
                assert answer.status_code == 200, answer.text
                history += answered(route, answer.json())
    truth = {entry["request_id"]: entry for entry in httpx.get(fake.url + "/fake/schedule").json()}  # this test's requests
    entries = [entry for entry in httpx.get(proxy.url + "/-/requests").json()["requests"] if entry["route"] == route and entry["trace_id"] in truth]
    assert len(entries) == 3 * TURNS
    named = {}
    for entry in entries:
        real = truth[entry["trace_id"]]
        assert (entry["input_tokens"], entry["prompt_cached_tokens"]) == (real["prompt_tokens"], real["cached_tokens"]), (entry, real)
        if route == "/api/chat":  # the only API of the four that times the prompt: the rate on its new tokens
            new = real["prompt_tokens"] - real["cached_tokens"]
            assert entry["prompt_tokens_per_second"] == pytest.approx(new / real["prompt_s"], rel=0.1), (entry, real)
        else:
            assert entry["prompt_tokens_per_second"] is None
        if entry["cache_miss"] is not None:
            named[(entry["turn"], entry["cache_miss"])] = named.get((entry["turn"], entry["cache_miss"]), 0) + 1
            assert entry["read_again_tokens"] > entry["prompt_cached_tokens"], entry
    # the three turns after the reload, and the rewritten history at its third message; no other turn
    story = [(entry["route"], entry["turn"], entry["load_reason"], entry["reload_cause"], entry["load_duration_s"], entry["cache_miss"])
             for entry in httpx.get(proxy.url + "/-/requests").json()["requests"][:22]]
    assert named == {(RELOAD_BEFORE, "reload"): 3, (EDITED[1], "history_changed"): 1}, "\n".join(map(str, [named, *story]))
    edited = next(entry for entry in entries if entry["cache_miss"] == "history_changed")
    assert edited["history_changed_at"] == (3 if route in ("/v1/messages", "/v1/responses") else 4)  # after the system message
    assert sorted(entry["turn"] for entry in entries) == sorted(list(range(1, TURNS + 1)) * 3)
    metrics = scrape(proxy.url)
    cached = sum(entry["prompt_cached_tokens"] for entry in entries)
    total = sum(entry["input_tokens"] for entry in entries)
    assert metrics.value("ollama_prompt_cached_tokens_total", gen_ai_request_model=MODEL) >= cached > 0.6 * total
    assert metrics.value("ollama_prompt_cache_misses_total", gen_ai_request_model=MODEL, ollama_cache_cause="reload") >= 3


def test_an_ollama_that_does_not_report_its_cache_gets_no_cached_count():
    with fake_ollama(token_delay=0.002, load_delay=0.05) as fake, otel_proxy(fake.url) as proxy:  # 0.32.15
        with httpx.Client(base_url=proxy.url, timeout=60) as client:
            for _ in range(3):
                for route in ROUTES:
                    answer = client.post(route, json=request(route, [first_message(route, QUESTIONS["A"])], False))
                    assert answer.status_code == 200, answer.text
                    assert "cache_read_input_tokens" not in answer.text and "prompt_eval_cached_count" not in answer.text
        truth = httpx.get(fake.url + "/fake/schedule").json()
        entries = httpx.get(proxy.url + "/-/requests").json()["requests"]
        metrics = scrape(proxy.url)
    assert any(entry["cached_tokens"] for entry in truth)  # the runner did cache: this Ollama only does not say so
    assert [entry["prompt_cached_tokens"] for entry in entries] == [None] * len(entries)  # not 0: /v1/responses' constant 0 too
    assert metrics.series("ollama_prompt_cached_tokens_total") == [] and metrics.series("ollama_prompt_cache_misses_total") == []


def test_conversations_that_share_a_long_system_prompt_on_one_slot_lose_their_history_and_are_told_so(served):
    """llama-server saves a slot's prompt to its RAM cache only when the next task keeps less than half of it
    (tests/fake/test_prompt_cache.py holds that to the real server): while the conversations are shorter than twice
    the system prompt they share, each turn finds only the system prompt, and the proxy names the other conversations
    that took the slot."""
    fake, proxy = served
    route, system = "/v1/messages", SYSTEM + " Keep every change small and tested. " * 25
    histories = {name: [first_message(route, question)] for name, question in QUESTIONS.items()}
    with httpx.Client(base_url=proxy.url, timeout=60) as client:
        for _ in range(4):
            for history in histories.values():
                answer = client.post(route, json=request(route, history, False, system))
                assert answer.status_code == 200, answer.text
                history += answered(route, answer.json())
    truth = {entry["request_id"]: entry for entry in httpx.get(fake.url + "/fake/schedule").json()}  # this test's requests
    entries = [entry for entry in httpx.get(proxy.url + "/-/requests").json()["requests"] if entry["trace_id"] in truth][::-1]
    assert len(entries) == 12
    lost = []
    for index, entry in enumerate(entries):
        real = truth[entry["trace_id"]]
        assert entry["prompt_cached_tokens"] == real["cached_tokens"]
        if index >= 3:  # from each conversation's second turn: what the last turn left, against what was found
            held = min(entries[index - 3]["input_tokens"], entry["input_tokens"])
            lost.append(held - real["cached_tokens"] >= max(64, held / 10))  # the proxy's rule: a tenth of it read again
        assert entry["cache_miss"] == ("slot_taken" if index >= 3 and lost[-1] else None), (index, entry)
    assert lost[:3] == [True] * 3 and not all(lost)  # the second turns lost theirs; the longer ones were saved and restored
