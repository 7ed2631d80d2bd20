"""Why a request was slow: Ollama's load_duration told apart (queue, cold load, reload), against the fake's scheduler.

The fake schedules like Ollama (tests/fake_scheduler.py) and logs what really happened to
each request, keyed by the trace id the proxy sends on and lists in /-/requests.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.harness import Server, configure_fake, fake_ollama, otel_proxy, scrape

MODEL = "llama3.2:1b"
LOAD_S = 0.4


@pytest.fixture
def scheduled() -> Iterator[tuple[Server, Server]]:
    """A fake Ollama with one slot per model and 0.4 s loads, and a proxy reading its /api/ps every 0.2 s."""
    with fake_ollama(token_delay=0.01, load_delay=LOAD_S) as fake, otel_proxy(fake.url, "--ps-interval", "0.2") as proxy:
        configure_fake(fake, parallel=1)
        time.sleep(0.5)  # the proxy has read /api/ps: nothing is resident
        yield fake, proxy


def generate(proxy: Server, num_ctx: int | None = None, prompt: str = "why is the sky blue", tokens: int = 6) -> None:
    options: dict = {"num_predict": tokens}
    if num_ctx is not None:
        options["num_ctx"] = num_ctx
    answer = httpx.post(proxy.url + "/api/generate", json={"model": MODEL, "prompt": prompt, "stream": True, "options": options}, timeout=60)
    assert answer.status_code == 200


def concurrently(calls: list) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def joined(fake: Server, proxy: Server) -> list[tuple[dict, dict]]:
    truth = {entry["request_id"]: entry for entry in httpx.get(fake.url + "/fake/schedule").json()}
    seen = httpx.get(proxy.url + "/-/requests").json()["requests"]
    pairs = [(entry, truth[entry["trace_id"]]) for entry in seen if entry["trace_id"] in truth]
    assert len(pairs) == len(truth), (len(pairs), len(truth))
    return pairs


def test_loads_by_reason_and_queue_wait_match_what_the_scheduler_did(scheduled):
    fake, proxy = scheduled
    concurrently([lambda: generate(proxy) for _ in range(4)])  # one cold load, three wait for it and for the slot
    concurrently([lambda: generate(proxy) for _ in range(3)])  # resident: all wait for the one slot
    generate(proxy, num_ctx=8192)  # a reload, nothing in flight
    # A reload behind a request still on the old runner (50 ms later: requests that race to the
    # proxy and to Ollama in the same instant can reach them in different orders).
    concurrently([lambda: generate(proxy, num_ctx=8192), lambda: (time.sleep(0.05), generate(proxy, num_ctx=4096))])
    time.sleep(0.3)
    pairs = joined(fake, proxy)
    truth_loads = Counter(truth["load_reason"] for _, truth in pairs if truth["load_reason"])
    metrics = scrape(proxy.url)
    counted = {reason: metrics.value("ollama_model_loads_total", ollama_load_reason=reason, gen_ai_request_model=MODEL) for reason in ("cold", "reload")}
    assert counted == {"cold": truth_loads["cold"], "reload": truth_loads["reload"]} and truth_loads["cold"] == 1 and truth_loads["reload"] >= 2
    for seen, truth in pairs:
        assert seen["load_reason"] == truth["load_reason"], (seen, truth)  # a request that only waited is never a load
        if truth["load_reason"] == "reload":
            assert seen["reload_cause"] == truth["reload_cause"]
    queued_truth = sum(truth["queue_s"] for _, truth in pairs)
    queued_seen = sum(seen["queue_wait_s"] for seen, _ in pairs)
    assert queued_truth > 1.0 and queued_seen == pytest.approx(queued_truth, rel=0.15), (queued_seen, queued_truth)
    assert metrics.value("ollama_queue_wait_seconds_sum", gen_ai_request_model=MODEL) == pytest.approx(queued_seen)
    assert metrics.value("ollama_requests_in_flight", gen_ai_request_model=MODEL) == 0


def test_each_requests_segments_add_up_to_its_duration(scheduled):
    fake, proxy = scheduled
    concurrently([lambda: generate(proxy) for _ in range(3)])
    for seen, _ in joined(fake, proxy):
        parts = [seen[name] for name in ("queue_wait_s", "load_s", "prompt_eval_s", "eval_s", "ollama_other_s", "proxy_s")]
        assert all(part is not None and part >= 0 for part in parts), seen
        assert sum(parts) == pytest.approx(seen["duration_s"], abs=1e-4)  # to a tenth of a millisecond: the fake rounds its nanoseconds
        assert seen["queue_wait_s"] + seen["load_s"] == pytest.approx(seen["load_duration_s"])


def test_a_request_that_fills_the_context_is_flagged(scheduled):
    fake, proxy = scheduled
    generate(proxy, num_ctx=64, prompt=" ".join(["word"] * 200), tokens=4)  # truncated to 64 prompt tokens: 68 / 64 of the context
    generate(proxy, num_ctx=64, prompt="short", tokens=4)
    entries = httpx.get(proxy.url + "/-/requests").json()["requests"]
    fills = sorted(entry["context_fill"] for entry in entries)
    assert fills == [pytest.approx(5 / 64), pytest.approx(68 / 64)]
    assert {entry["context_length"] for entry in entries} == {64}
    metrics = scrape(proxy.url)
    assert metrics.value("ollama_context_full_total", gen_ai_request_model=MODEL) == 1
    assert metrics.value("ollama_context_fill_count", gen_ai_request_model=MODEL) == 2


def test_what_the_proxy_cannot_tell_is_unknown_never_a_guess():
    """Ollama unloads the model behind the proxy's back (its /api/ps read is an hour old): the next request's
    long load_duration is neither queue nor load for the proxy, and no load is counted."""
    with fake_ollama(token_delay=0.01, load_delay=LOAD_S) as fake, otel_proxy(fake.url, "--ps-interval", "3600") as proxy:
        generate(proxy)
        generate(proxy)  # resident now, in the proxy's view too
        configure_fake(fake, unload=True)
        generate(proxy)
        newest = httpx.get(proxy.url + "/-/requests").json()["requests"][0]
        metrics = scrape(proxy.url)
    assert (newest["load_reason"], newest["queue_wait_s"], newest["load_s"]) == ("unknown", None, None)
    assert newest["load_duration_s"] >= LOAD_S
    assert metrics.value("ollama_model_loads_total", ollama_load_reason="cold") == 1  # the first request's, seen at start


def test_a_model_that_expired_loads_cold_again(scheduled):
    fake, proxy = scheduled
    body = {"model": MODEL, "prompt": "hi", "stream": False, "keep_alive": 0, "options": {"num_predict": 2}}  # unloaded right after
    httpx.post(proxy.url + "/api/generate", json=body, timeout=30).raise_for_status()
    time.sleep(0.5)  # the proxy reads /api/ps: nothing resident
    generate(proxy)
    pairs = joined(fake, proxy)
    assert [truth["load_reason"] for _, truth in sorted(pairs, key=lambda p: p[0]["start_time"])] == ["cold", "cold"]
    assert [seen["load_reason"] for seen, _ in pairs] == ["cold", "cold"]
    assert scrape(proxy.url).value("ollama_model_loads_total", ollama_load_reason="cold") == 2
