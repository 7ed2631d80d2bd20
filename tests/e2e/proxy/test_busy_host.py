"""A busy host, against the fake Ollama as Ollama schedules (issue 23's "done when").

Six official clients overlap on every API (ollama-python's generate and chat, openai-python's
chat completions and Responses, anthropic-python's Messages), with two slots, the untagged
names people type, and one client switching ``num_ctx``. The fake logs every part of every
request's time (tests/fake/scheduler.py); the proxy's account is compared with it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import anthropic
import httpx
import ollama
import openai
import pytest

from tests.support.harness import configure_fake, fake_ollama, otel_proxy, scrape

SECONDS = 15.0
MODEL = "llama3.2"  # untagged: Ollama runs llama3.2:latest, the same manifest as llama3.2:3b
ONE_NAME = "llama3.2:3b"  # the one name both services give it (ollama_otel_stack/model_names.py)
OTHER = "qwen2.5"
# Each client pauses this long between its requests, as people and agents do: without a pause the
# default-option clients keep joining the old runner, whose drain then never ends (Ollama's rule).
THINK_S = 0.1


def clients(url: str) -> dict[str, object]:
    native = ollama.Client(host=url)
    oai = openai.OpenAI(base_url=url + "/v1", api_key="ollama", max_retries=0)
    claude = anthropic.Anthropic(base_url=url, api_key="ollama", max_retries=0)
    switch = iter(range(10**6))
    messages = [{"role": "user", "content": "why is the sky blue"}]
    return {
        "ollama generate": lambda: list(native.generate(model=MODEL, prompt="why is the sky blue", stream=True, options={"num_predict": 8})),
        # alternates between its own num_ctx and Ollama's default: every switch is a reload
        "ollama chat, switching num_ctx": lambda: native.chat(model=MODEL, messages=messages, options={"num_predict": 8, **({"num_ctx": 8192} if next(switch) % 2 else {})}),
        "openai chat stream": lambda: list(oai.chat.completions.create(model=MODEL, messages=messages, stream=True, max_tokens=8)),
        "openai chat": lambda: oai.chat.completions.create(model=MODEL, messages=messages, max_tokens=8),
        "openai responses": lambda: list(oai.responses.create(model=OTHER, input="why is the sky blue", stream=True, max_output_tokens=8)),
        "anthropic messages": lambda: claude.messages.create(model=MODEL, max_tokens=8, messages=messages),
    }


@pytest.fixture(scope="module")
def busy():
    with fake_ollama(token_delay=0.01, load_delay=0.4) as fake, \
            otel_proxy(fake.url, "--ps-interval", "0.2", "--num-parallel", "2", "--recent-requests", "10000") as proxy:
        configure_fake(fake, parallel=2)
        time.sleep(0.5)  # the proxy has read /api/tags and /api/ps: nothing is resident
        deadline = time.monotonic() + SECONDS
        failures: list[BaseException] = []

        def loop(call) -> None:
            while time.monotonic() < deadline:
                try:
                    call()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)
                    return
                time.sleep(THINK_S)

        threads = [threading.Thread(target=loop, args=(call,)) for call in clients(proxy.url).values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        time.sleep(0.5)
        truth = {entry["request_id"]: entry for entry in httpx.get(fake.url + "/fake/schedule").json()}
        seen = httpx.get(proxy.url + "/-/requests").json()["requests"]
        pairs = [(entry, truth[entry["trace_id"]]) for entry in seen if entry["trace_id"] in truth]
        assert len(pairs) == len(truth) > 100, (len(pairs), len(truth))
        metrics = scrape(proxy.url)
        print(f"busy host: {len(pairs)} requests; truth waiting {sum(t['waiting_s'] for _, t in pairs):.2f} s (slot {sum(t['slot_s'] for _, t in pairs):.2f}, "
              f"pending {sum(t['pending_s'] for _, t in pairs):.2f}, drain {sum(t['drain_s'] for _, t in pairs):.2f}); proxy {sum(e['queue_wait_s'] or 0 for e, _ in pairs):.2f} s "
              f"(slot {sum(e['slot_wait_s'] or 0 for e, _ in pairs):.2f}, pending {sum(e['pending_wait_s'] or 0 for e, _ in pairs):.2f}, drain {sum(e['drain_s'] or 0 for e, _ in pairs):.2f}); "
              f"loads truth {Counter(t['load_reason'] for _, t in pairs if t['load_reason'])}, proxy {Counter(e['load_reason'] for e, _ in pairs if e['load_reason'])}")
        yield pairs, metrics


def test_cold_loads_are_exact_and_reloads_within_ten_percent(busy):
    pairs, metrics = busy
    truth = Counter((truth["runner"], truth["load_reason"]) for _, truth in pairs if truth["load_reason"])
    reloads = sum(count for (_, reason), count in truth.items() if reason == "reload")
    assert reloads >= 3, truth  # few: a reload drains, and warm requests with the old options keep joining the old runner
    for model, runner in ((ONE_NAME, "llama3.2:latest"), ("qwen2.5:7b", "qwen2.5:latest")):
        counted = metrics.value("ollama_model_loads_total", ollama_load_reason="cold", gen_ai_request_model=model)
        assert counted == truth[(runner, "cold")], (model, counted, truth)
    counted_reloads = metrics.value("ollama_model_loads_total", ollama_load_reason="reload")
    assert counted_reloads == pytest.approx(reloads, rel=0.10), (counted_reloads, reloads)


def test_summed_waiting_is_within_fifteen_percent(busy):
    """Pending queue, drain and slot waits together, over every request on every API."""
    pairs, _ = busy
    waited_truth = sum(truth["waiting_s"] for _, truth in pairs)
    waited_seen = sum(seen["queue_wait_s"] or 0.0 for seen, _ in pairs)
    assert waited_truth > 5.0
    assert waited_seen == pytest.approx(waited_truth, rel=0.15), (waited_seen, waited_truth)



def test_slot_waits_are_exact_where_ollama_times_them_and_within_a_token_step_where_replayed(busy):
    """Native answers: total - load - prompt - eval, to the millisecond. OpenAI and Anthropic answers carry no
    durations: their waits are replayed from the ends of the requests ahead, so each is off by the order in
    which near-simultaneous requests reached Ollama, at most about one generation (8 tokens, 80 ms).

    Not every one: an untimed request that reaches Ollama in the instant a reload is decided can be taken for
    the reload when it joined it, or the other way round (the proxy sees neither its hand-over nor its load),
    and one that arrives as a load is handed over cannot be told apart from one that waits for it. Those are
    held to the sums below; at most 5 % of the untimed requests may be off by more than the bound (this host
    saw 0 to 2 of about 230)."""
    pairs, _ = busy
    timed = [(seen, truth) for seen, truth in pairs if seen["route"].startswith("/api/")]
    replayed = [(seen, truth) for seen, truth in pairs if not seen["route"].startswith("/api/")]
    waited = [sum(1 for _, truth in group if truth["slot_s"] > 0.005) for group in (timed, replayed)]
    # each kind has requests that really waited for a slot, so neither check below holds vacuously: the native API's
    # two clients meet at the two slots less often (2 to 9 such requests a run here; a sum in seconds varied too much)
    assert waited[0] >= 1 and waited[1] >= 3, waited
    for seen, truth in timed:
        assert seen["slot_wait_s"] == pytest.approx(truth["slot_s"], abs=0.01), (seen, truth)
    untold = [(seen, truth) for seen, truth in replayed if seen["slot_wait_s"] is None or seen["queue_wait_s"] is None]
    assert not untold, [({k: v for k, v in seen.items() if k.endswith(("_s", "reason", "cause", "route", "kind"))}, truth) for seen, truth in untold]
    off = [({k: seen[k] for k in ("route", "pending_wait_s", "drain_s", "slot_wait_s", "load_reason")},
            {k: truth[k] for k in ("pending_s", "drain_s", "slot_s", "load_reason")})
           for seen, truth in replayed
           if abs(seen["queue_wait_s"] - truth["waiting_s"]) > 0.12 or abs(seen["slot_wait_s"] - truth["slot_s"]) > 0.12]
    print(f"untimed requests off by more than 0.12 s: {len(off)} of {len(replayed)}")
    assert len(off) <= 0.05 * len(replayed), off
    summed = sum(seen["slot_wait_s"] for seen, _ in replayed), sum(truth["slot_s"] for _, truth in replayed)
    # summed, within 35 % or 2 ms a request (a fortieth of a generation: which of near-simultaneous requests reached
    # Ollama first is not known to the ms), whichever is larger: the sum is often under a second; CI saw 1.21 s for 0.80 s
    assert summed[0] == pytest.approx(summed[1], rel=0.35, abs=0.002 * len(replayed)), summed


def test_one_name_per_model_and_each_part_of_a_native_answer_is_the_fakes(busy):
    """Ollama's own APIs tell load_duration, prompt_eval_duration and eval_duration: the proxy's split of each request
    is held part by part to what the fake did, not to their sum, which two remainders would make up whatever the split.
    The split of a load_duration into pending, drain and load follows the proxy's view of the scheduler, which can
    misplace a request that arrived in the instant a reload was decided (see the slot-wait test, which also holds the
    slot waits): at most 5 %."""
    pairs, metrics = busy
    labels = {series["gen_ai_request_model"] for series in metrics.series("gen_ai_server_request_duration_seconds_count")}
    assert labels == {ONE_NAME, "qwen2.5:7b"}, labels
    assert all(seen["model"] in (ONE_NAME, "qwen2.5:7b") for seen, _ in pairs)
    native = [(seen, truth) for seen, truth in pairs if seen["ollama_total_s"] is not None]
    assert len(native) > 30 and sum(1 for _, truth in native if truth["load_s"] > 0) >= 2, len(native)
    misplaced = []
    for seen, truth in native:
        assert seen["prompt_eval_s"] == pytest.approx(truth["prompt_s"], abs=1e-6), (seen, truth)  # Ollama's, passed on
        assert seen["eval_s"] == pytest.approx(truth["eval_s"], abs=1e-6), (seen, truth)
        assert seen["ollama_other_s"] >= 0 and seen["proxy_s"] >= 0, {k: v for k, v in seen.items() if k.endswith("_s")}
        told = {"pending": seen["pending_wait_s"] or 0.0, "drain": seen["drain_s"] or 0.0, "load": (seen["load_s"] or 0.0) + (seen["unknown_s"] or 0.0)}
        done = {"pending": truth["pending_s"], "drain": truth["drain_s"] + truth["evict_s"], "load": truth["load_s"]}
        if any(abs(told[part] - done[part]) > 0.05 for part in told):
            misplaced.append((told, done, seen["load_reason"], truth["load_reason"]))
    print(f"native requests whose load_duration was split otherwise than the fake's: {len(misplaced)} of {len(native)}")
    # what no part names is the fake's own overhead (its handler before and after the runner): a remainder hiding a part
    # would be seconds here, where the fake's is milliseconds a request
    other, total = sum(seen["ollama_other_s"] for seen, _ in native), sum(seen["ollama_total_s"] for seen, _ in native)
    assert other < 0.05 * total, (other, total)
    assert len(misplaced) <= 0.05 * len(native), [(m[0], m[1]) for m in misplaced]


def test_each_rate_is_the_fakes_own(busy):
    """Native answers: Ollama's eval_count over eval_duration, exact. Streamed answers without durations: the tokens
    after the first over the time from the first to the last, each within a fifth of the fake's own rate (its tokens
    over its generation time), and all of them together within 5 % (a chunk can reach the proxy late on a busy host,
    the next one early). Answers in one piece have no rate: their generation time is not known."""
    pairs, _ = busy
    ratios = []
    for seen, truth in pairs:
        native = seen["route"] in ("/api/chat", "/api/generate")
        if not native and not seen["stream"]:
            assert seen["tokens_per_second"] is None, seen
            continue
        if seen["tokens_per_second"] is None:
            continue
        own = seen["output_tokens"] / truth["eval_s"]
        if native:
            assert seen["tokens_per_second"] == pytest.approx(own, rel=1e-6), (seen, truth)
        else:
            ratios.append(seen["tokens_per_second"] / own)
    ratios.sort()
    print(f"streamed rates over the fake's: {len(ratios)}, median {ratios[len(ratios) // 2]:.3f}, from {ratios[0]:.3f} to {ratios[-1]:.3f}")
    assert len(ratios) > 50 and 0.95 <= ratios[len(ratios) // 2] <= 1.05, ratios
    assert sum(1 for ratio in ratios if not 0.8 <= ratio <= 1.25) <= 0.05 * len(ratios), ratios
