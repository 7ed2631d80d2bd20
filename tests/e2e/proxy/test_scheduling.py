"""Why a request was slow: Ollama's load_duration told apart (queue, cold load, reload), against the fake's scheduler.

The fake schedules like Ollama (tests/fake/scheduler.py) and logs what really happened to
each request, keyed by the trace id the proxy sends on and lists in /-/requests.
"""

from __future__ import annotations

import concurrent.futures
from datetime import datetime
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.support.harness import Server, configure_fake, fake_ollama, fake_stats, otel_proxy, read_again, scrape, until

MODEL = "llama3.2:1b"
LOAD_S = 0.4


@pytest.fixture
def scheduled() -> Iterator[tuple[Server, Server]]:
    """A fake Ollama with one slot per model and 0.4 s loads, and a proxy reading its /api/ps every 0.2 s."""
    with fake_ollama(token_delay=0.01, load_delay=LOAD_S) as fake, otel_proxy(fake.url, "--ps-interval", "0.2") as proxy:
        configure_fake(fake, parallel=1)  # the proxy serves once it has read /api/ps (otel_proxy/app.py): nothing is resident
        yield fake, proxy


def generate(proxy: Server, num_ctx: int | None = None, prompt: str = "why is the sky blue", tokens: int = 6) -> None:
    options: dict = {"num_predict": tokens}
    if num_ctx is not None:
        options["num_ctx"] = num_ctx
    answer = httpx.post(proxy.url + "/api/generate", json={"model": MODEL, "prompt": prompt, "stream": True, "options": options}, timeout=60)
    assert answer.status_code == 200


def streaming_then(proxy: Server, path: str, body: dict, then) -> None:
    """Streams ``body`` to ``path`` and, once its first chunk is in (it holds its runner, or ollama.com answers it),
    calls ``then`` beside the rest of it: an order a busy machine cannot swap, as a head start in seconds could."""
    with httpx.Client(timeout=60) as client, client.stream("POST", proxy.url + path, json=body) as answer:
        assert answer.status_code == 200
        lines = answer.iter_lines()
        next(lines)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            later = pool.submit(then)
            for _ in lines:
                pass
            later.result()


def concurrently(calls: list) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def joined(fake: Server, proxy: Server) -> list[tuple[dict, dict]]:
    """Each request the fake's scheduler saw, with the proxy's account of it, once the proxy has listed them all."""
    truth = {entry["request_id"]: entry for entry in httpx.get(fake.url + "/fake/schedule").json()}

    def pairs() -> list[tuple[dict, dict]]:
        seen = httpx.get(proxy.url + "/-/requests").json()["requests"]
        found = [(entry, truth[entry["trace_id"]]) for entry in seen if entry["trace_id"] in truth]
        return found if len(found) == len(truth) else []

    return until(pairs, deadline_s=10)


PARTS = ("pending_wait_s", "drain_s", "load_s", "slot_wait_s")
TRUTH = {"pending_wait_s": "pending_s", "drain_s": "drain_s", "load_s": "load_s", "slot_wait_s": "slot_s"}


def forwarding_spread(pairs: list[tuple[dict, dict]]) -> float:
    """How much the requests' passages from the proxy to Ollama differed (seconds). The proxy times a wait from its own
    arrivals: one request forwarded slower than the one it waited behind moves the wait by the difference, which a busy
    machine makes tens of milliseconds and which no one in front of Ollama can see."""
    lags = [truth["arrived_at"] - datetime.fromisoformat(seen["start_time"]).timestamp() for seen, truth in pairs]
    return max(lags) - min(lags)


def assert_parts_match(pairs: list[tuple[dict, dict]], tolerance_s: float = 0.05) -> None:
    """Each request's pending wait, drain, load and slot wait as the scheduler logged them, and its parts add up."""
    tolerance_s += forwarding_spread(pairs)
    for seen, truth in pairs:
        assert seen["load_reason"] == truth["load_reason"], (seen, truth)  # a request that only waited is never a load
        if truth["load_reason"] == "reload":
            assert seen["reload_cause"] == truth["reload_cause"]
        for part, true_part in TRUTH.items():
            assert seen[part] == pytest.approx(truth[true_part], abs=tolerance_s), (part, seen, truth)
        parts = [seen[name] for name in (*PARTS, "prompt_eval_s", "eval_s", "ollama_other_s", "proxy_s")]
        assert sum(parts) == pytest.approx(seen["duration_s"], abs=1e-4)  # to a tenth of a millisecond: the fake rounds its nanoseconds
        assert seen["pending_wait_s"] + seen["drain_s"] + seen["load_s"] <= seen["load_duration_s"] + 1e-9


def test_loads_and_every_wait_match_what_the_scheduler_did(scheduled):
    fake, proxy = scheduled
    concurrently([lambda: generate(proxy) for _ in range(4)])  # one cold load; three wait for it in the pending queue, then for the slot
    concurrently([lambda: generate(proxy) for _ in range(3)])  # resident: handed over at once, then wait for the one slot
    generate(proxy, num_ctx=8192)  # a reload, nothing in flight
    # A reload behind a request still generating on the old runner (sent once its first token is in: 0.49 s to drain)
    on_old_runner = {"model": MODEL, "prompt": "why is the sky blue", "stream": True, "options": {"num_predict": 50, "num_ctx": 8192}}
    streaming_then(proxy, "/api/generate", on_old_runner, lambda: generate(proxy, num_ctx=4096))
    pairs = joined(fake, proxy)
    truth_loads = Counter(truth["load_reason"] for _, truth in pairs if truth["load_reason"])
    metrics = scrape(proxy.url)
    counted = {reason: metrics.value("ollama_model_loads_total", ollama_load_reason=reason, gen_ai_request_model=MODEL) for reason in ("cold", "reload")}
    assert counted == {"cold": truth_loads["cold"], "reload": truth_loads["reload"]} and truth_loads["cold"] == 1 and truth_loads["reload"] >= 2
    assert_parts_match(pairs)
    waited_truth = sum(truth["waiting_s"] for _, truth in pairs)
    waited_seen = sum(seen["queue_wait_s"] for seen, _ in pairs)
    assert sum(truth["slot_s"] for _, truth in pairs) > 0.3 and sum(truth["drain_s"] for _, truth in pairs) > 0.15
    assert waited_truth > 1.0 and waited_seen == pytest.approx(waited_truth, rel=0.15), (waited_seen, waited_truth)
    assert metrics.value("ollama_queue_wait_seconds_sum", gen_ai_request_model=MODEL) == pytest.approx(waited_seen)
    for phase, part in (("slot", "slot_wait_s"), ("drain", "drain_s"), ("load", "load_s"), ("pending", "pending_wait_s")):
        assert metrics.value("ollama_scheduler_time_seconds_total", ollama_phase=phase, gen_ai_request_model=MODEL) == pytest.approx(sum(seen[part] for seen, _ in pairs)), phase
    assert metrics.value("ollama_requests_in_flight", gen_ai_request_model=MODEL) == 0


def test_slot_waits_with_no_loads_are_counted(scheduled):
    """One slot, five overlapping requests to a loaded model: no load at all, and 4 of them wait after the hand-over."""
    fake, proxy = scheduled
    generate(proxy)
    configure_fake(fake, reset_stats=True)
    concurrently([lambda: generate(proxy, tokens=10) for _ in range(5)])
    pairs = joined(fake, proxy)
    assert all(truth["load_reason"] is None and truth["pending_s"] == 0 for _, truth in pairs)
    slots_truth = sum(truth["slot_s"] for _, truth in pairs)
    assert slots_truth > 0.6  # 0.1 s a request: 0.1 + 0.2 + 0.3 + 0.4 = 1.0, less the overlap of their arrivals
    assert sum(seen["slot_wait_s"] for seen, _ in pairs) == pytest.approx(slots_truth, rel=0.1)
    assert_parts_match(pairs)


def test_a_load_waits_behind_another_models_load_and_names_it(scheduled):
    """Ollama's pending queue is one for all models: a cold load of qwen2.5 holds up the load of llama3.2."""
    fake, proxy = scheduled
    other = "qwen2.5:7b"

    def generate_other() -> None:
        httpx.post(proxy.url + "/api/generate", json={"model": other, "prompt": "hi", "options": {"num_predict": 20}}, timeout=60).raise_for_status()

    def once_it_loads() -> None:
        until(lambda: fake_stats(fake)["loading"] == other, every_s=0.01)  # the other model's load has begun
        generate(proxy, tokens=2)

    concurrently([generate_other, once_it_loads])
    pairs = joined(fake, proxy)
    mine = next((seen, truth) for seen, truth in pairs if truth["model"] == MODEL)
    assert mine[1]["behind"] == [f"{other} (cold)"] and mine[1]["pending_s"] > 0.2
    assert mine[0]["waited_behind"] == [other]
    assert_parts_match(pairs)
    counted = scrape(proxy.url).value("ollama_scheduler_time_seconds_total", ollama_phase="pending", ollama_behind=other, gen_ai_request_model=MODEL)
    assert counted == pytest.approx(mine[1]["pending_s"], abs=0.05 + forwarding_spread(pairs))


def test_untyped_and_aliased_names_are_one_model_as_ollama_runs_it(scheduled):
    """llama3.2, Llama3.2:LATEST and llama3.2:3b are one manifest (one blob, one runner): one label, one load."""
    fake, proxy = scheduled
    for name in ("llama3.2", "Llama3.2:LATEST", "llama3.2:3b", "registry.ollama.ai/library/llama3.2"):
        httpx.post(proxy.url + "/api/generate", json={"model": name, "prompt": "hi", "options": {"num_predict": 2}}, timeout=60).raise_for_status()
    read_again(fake)  # the proxy has read /api/ps since
    truth = httpx.get(fake.url + "/fake/schedule").json()
    assert [entry["load_reason"] for entry in truth] == ["cold", None, None, None]
    metrics = scrape(proxy.url)
    assert metrics.value("ollama_model_loads_total", ollama_load_reason="cold", gen_ai_request_model="llama3.2:3b") == 1
    assert metrics.value("gen_ai_server_request_duration_seconds_count", gen_ai_request_model="llama3.2:3b") == 4
    assert not [labels for labels in metrics.series("gen_ai_server_request_duration_seconds_count") if labels.get("gen_ai_request_model", "").lower().startswith("llama3.2") and labels["gen_ai_request_model"] != "llama3.2:3b"]
    entries = httpx.get(proxy.url + "/-/requests").json()["requests"]
    assert {entry["model"] for entry in entries} == {"llama3.2:3b"}
    assert sorted(entry["requested_model"] for entry in entries) == sorted(["llama3.2", "Llama3.2:LATEST", "llama3.2:3b", "registry.ollama.ai/library/llama3.2"])


def test_a_reload_against_the_default_context_names_both_values(scheduled):
    """With 24 GiB of VRAM Ollama's default num_ctx is 32768; the proxy learns it from /api/ps and names it in the cause."""
    fake, proxy = scheduled
    configure_fake(fake, total_vram_gib=24)
    generate(proxy)
    read_again(fake)  # /api/ps: context_length 32768 for a runner loaded without num_ctx
    generate(proxy, num_ctx=8192)
    newest = httpx.get(proxy.url + "/-/requests").json()["requests"][0]
    assert (newest["load_reason"], newest["reload_cause"]) == ("reload", "num_ctx 32768 -> 8192")
    assert httpx.get(fake.url + "/fake/schedule").json()[-1]["reload_cause"] == "num_ctx 32768 -> 8192"
    reloads = scrape(proxy.url).series("ollama_model_loads_total", ollama_load_reason="reload")
    assert [labels.get("ollama_load_cause") for labels in reloads] == ["num_ctx"]  # the option's name: a client's values stay out of labels


def test_a_request_that_fills_the_context_is_flagged(scheduled):
    fake, proxy = scheduled
    # cut to 34 prompt tokens: the first 4 and the tail (llm/llama_server.go contextShiftPromptLimit: 64 - (64 - 4) / 2)
    generate(proxy, num_ctx=64, prompt=" ".join(["word"] * 200), tokens=4)
    generate(proxy, num_ctx=64, prompt="short", tokens=4)
    entries = httpx.get(proxy.url + "/-/requests").json()["requests"]
    fills = sorted(entry["context_fill"] for entry in entries)
    assert fills == [pytest.approx(5 / 64), pytest.approx(38 / 64)]
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
    assert (newest["load_reason"], newest["pending_wait_s"], newest["load_s"]) == ("unknown", None, None)
    assert newest["unknown_s"] == newest["load_duration_s"]
    assert newest["load_duration_s"] >= LOAD_S
    assert metrics.value("ollama_model_loads_total", ollama_load_reason="cold") == 1  # the first request's, seen at start


def test_a_model_that_expired_loads_cold_again(scheduled):
    fake, proxy = scheduled
    body = {"model": MODEL, "prompt": "hi", "stream": False, "keep_alive": 0, "options": {"num_predict": 2}}  # unloaded right after
    httpx.post(proxy.url + "/api/generate", json=body, timeout=30).raise_for_status()
    read_again(fake)  # the proxy reads /api/ps: nothing resident
    generate(proxy)
    pairs = joined(fake, proxy)
    assert [truth["load_reason"] for _, truth in sorted(pairs, key=lambda p: p[0]["start_time"])] == ["cold", "cold"]
    assert [seen["load_reason"] for seen, _ in pairs] == ["cold", "cold"]
    assert scrape(proxy.url).value("ollama_model_loads_total", ollama_load_reason="cold") == 2


def test_a_busy_runners_expiry_is_not_taken_for_an_unload():
    """/api/ps shows no expiry (Go's zero time) for a runner still busy after its load, and an old one for a busy
    runner (server/sched.go sets expiresAt when the runner goes idle): the request soon after is warm, not cold.
    (/api/ps is read right after the load, while the first request runs, then only every second.) On the OpenAI
    API, whose answers carry no load_duration to correct a wrong view."""
    with fake_ollama(token_delay=0.01, load_delay=LOAD_S) as fake, otel_proxy(fake.url, "--ps-interval", "1") as proxy:
        for count in range(3):
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40, "stream": True}  # 0.4 s each
            httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=30).raise_for_status()
            done = count + 1
            until(lambda: len(httpx.get(proxy.url + "/-/requests").json()["requests"]) == done)  # the proxy has taken in its end
        pairs = joined(fake, proxy)
        cold = scrape(proxy.url).value("ollama_model_loads_total", ollama_load_reason="cold")
    assert [truth["load_reason"] for _, truth in pairs] == [None, None, "cold"]
    assert [seen["load_reason"] for seen, _ in pairs] == [None, None, "cold"]
    assert cold == 1


def test_a_model_ollama_lacks_is_neither_loaded_nor_kept(scheduled):
    """Ollama's 404 for a model it does not have: no load counted, no wait, nothing remembered of the name;
    a real model's cold load right after is still a cold load."""
    fake, proxy = scheduled
    missing = httpx.post(proxy.url + "/api/generate", json={"model": "no-such-model:1b", "prompt": "hi"}, timeout=30)
    assert missing.status_code == 404
    generate(proxy)
    entries = httpx.get(proxy.url + "/-/requests").json()["requests"]
    lacking = next(entry for entry in entries if entry["requested_model"] == "no-such-model:1b")
    assert (lacking["load_reason"], lacking["queue_wait_s"]) == (None, None)
    metrics = scrape(proxy.url)
    assert metrics.series("ollama_model_loads_total", ollama_load_reason="cold") == [
        {"gen_ai_provider_name": "ollama", "gen_ai_request_model": MODEL, "ollama_load_reason": "cold"}]


def test_a_cloud_model_goes_around_the_scheduler_and_holds_up_no_local_load(scheduled):
    """Ollama hands a cloud model to ollama.com before its scheduler (server/routes.go, the modelSourceCloud branch): no
    load, no slot, no pending queue. A local cold load made while a cloud answer streams waits behind nothing."""
    fake, proxy = scheduled
    cloud = "gpt-oss:120b-cloud"

    cloud_chat = {"model": cloud, "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 40}}
    streaming_then(proxy, "/api/chat", cloud_chat, lambda: generate(proxy, tokens=2))
    pairs = joined(fake, proxy)
    assert [truth["model"] for _, truth in pairs] == [MODEL]  # the fake's scheduler never saw the cloud request
    (local, truth), = pairs
    assert truth["load_reason"] == "cold" and truth["pending_s"] < 0.01 and truth["behind"] == [] and local["waited_behind"] == []
    assert_parts_match(pairs)
    entry = next(e for e in httpx.get(proxy.url + "/-/requests").json()["requests"] if e["requested_model"] == cloud)
    assert entry["cloud"] is True and entry["output_tokens"] == 40
    assert [entry[part] for part in (*PARTS, "load_reason", "load_duration_s", "queue_wait_s")] == [None] * 7  # ollama.com's time, not told apart
    metrics = scrape(proxy.url)
    assert metrics.value("ollama_model_loads_total") == 1 and metrics.value("ollama_model_loads_total", gen_ai_request_model=MODEL, ollama_load_reason="cold") == 1
    assert metrics.series("ollama_scheduler_time_seconds_total", gen_ai_request_model=cloud) == []
    assert metrics.value("ollama_requests_in_flight", gen_ai_request_model=cloud) == 0
