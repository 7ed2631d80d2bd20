"""The AI status line: the rules, the prompt, the cleaning, and the model through the fake Ollama."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.support.harness import configure_fake, free_port
from ui import settings
from ui.settings import Settings
from ui.status import Snapshot, StatusCache, assess, build_prompt, clean, rules_sentence

CALM = Snapshot(ollama_up=True, request_rate=0.5, active_requests=1, p95_latency_s=1.0, p95_latency_hour_s=1.0,
                success_rate=1.0, tokens_per_second=42.0, ttft_p95_s=0.2, gpu=0.3, gpu_recent=[0.25, 0.3],
                temperature_c=55.0, power_w=120.0, memory_ratio=0.5, loaded_models=["llama3.2:1b"])


@pytest.mark.parametrize(
    ("change", "condition", "expected"),
    [
        ({"request_rate": 0.0, "active_requests": 0}, "activity", "idle"),
        ({"request_rate": 0.0, "active_requests": 2}, "activity", "low"),
        ({"request_rate": 0.19}, "activity", "low"),
        ({"request_rate": 0.2}, "activity", "moderate"),
        ({"request_rate": 2.0}, "activity", "high"),
        ({"p95_latency_s": 1.49}, "latency", "normal"),
        ({"p95_latency_s": 1.5}, "latency", "elevated"),
        ({"p95_latency_s": 3.0}, "latency", "high"),
        ({"p95_latency_s": None}, "latency", "no recent requests"),
        ({"success_rate": 0.999}, "reliability", "good"),
        ({"success_rate": 0.98}, "reliability", "degraded"),
        ({"success_rate": 0.9}, "reliability", "failing"),
        ({"success_rate": None}, "reliability", "no requests"),
        ({"gpu": 0.05, "gpu_recent": [0.05]}, "gpu", "idle"),
        ({"gpu": 0.5, "gpu_recent": [0.5]}, "gpu", "busy"),
        ({"gpu": 0.85, "gpu_recent": [0.6, 0.85]}, "gpu", "saturated"),
        ({"gpu": 0.85, "gpu_recent": [0.12, 0.3, 0.85]}, "gpu", "saturated, spiked from 12 % to 85 %"),
        ({"gpu": None}, "gpu", "not measured"),
        ({"temperature_c": 74.9}, "temperature", "ok"),
        ({"temperature_c": 75.0}, "temperature", "warm"),
        ({"temperature_c": 85.0}, "temperature", "hot"),
        ({"power_w": 49.0}, "power", "low"),
        ({"power_w": 300.0}, "power", "high"),
        ({"power_w": None}, "power", "not measured"),
        ({"memory_ratio": 0.74}, "memory", "good"),
        ({"memory_ratio": 0.8}, "memory", "tight"),
        ({"memory_ratio": 0.95}, "memory", "nearly full"),
        ({"ollama_up": False}, "ollama", "unreachable"),
    ],
)
def test_every_threshold(change, condition, expected):
    snapshot = Snapshot(**{**vars(CALM), **change})
    assert assess(snapshot)[condition] == expected


def test_the_prompt_contains_every_analysed_condition():
    snapshot = Snapshot(**{**vars(CALM), "gpu": 0.9, "gpu_recent": [0.1, 0.9], "temperature_c": 88.0})
    prompt = build_prompt(snapshot, assess(snapshot))
    for phrase in ("Ollama: running", "llama3.2:1b", "activity: moderate", "latency: normal", "reliability: good",
                   "42.0 tokens/s", "GPU: saturated, spiked from 10 % to 90 %", "temperature: hot (88 °C)",
                   "power: moderate (120 W)", "memory: good (50 % used)", "under 100 characters"):
        assert phrase in prompt, phrase


def test_the_rules_write_their_own_sentence():
    snapshot = Snapshot(**{**vars(CALM), "gpu": 0.9, "gpu_recent": [0.1, 0.9]})
    assert rules_sentence(snapshot, assess(snapshot)) == "Ollama is running (moderate load, latency normal), GPU saturated, spiked from 10 % to 90 %, temperature ok, memory good"[:100].rsplit(" ", 1)[0].rstrip(",")
    down = Snapshot(ollama_up=False)
    assert rules_sentence(down, assess(down)) == "Ollama is unreachable"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("All good: GPU idle, memory fine.\nSecond line with more\nand more", "All good: GPU idle, memory fine."),
        ('"**Llama is running** and `cool`"', "Llama is running and cool"),
        ("<b>GPU</b> spiked <script>alert(1)</script>to 90%", "GPU spiked alert(1)to 90%"),
        ("Status: everything is fine", "everything is fine"),
        ("# Heading\n", "Heading"),
        ("word " * 100, ("word " * 20).strip()),
        ("\n\n   \n", None),
        ("ok", None),
    ],
)
def test_garbage_answers_are_cleaned(answer, expected):
    assert clean(answer) == expected
    if expected:
        assert len(expected) <= 100 and "\n" not in expected


def at(ollama_url: str) -> Settings:
    return Settings(ollama_url=ollama_url)


def test_the_models_line_shows_with_its_source(fake):
    configure_fake(fake, answers={"phi3:mini": "  Llama is busy but healthy; GPU warm, memory fine.\nignored"})
    line = StatusCache().get(CALM, at(fake.url), now=1000.0)
    assert (line.text, line.source) == ("Llama is busy but healthy; GPU warm, memory fine.", "phi3:mini")


def test_a_model_not_pulled_falls_back_to_rules_with_the_pull_hint(fake):
    configure_fake(fake, remove_models=["phi3:mini"])
    try:
        line = StatusCache().get(CALM, at(fake.url))
    finally:
        configure_fake(fake, answers={"phi3:mini": "Back again."})
    assert line.source == "rules" and line.hint == "run `ollama pull phi3:mini`"
    assert line.text == rules_sentence(CALM, assess(CALM))


def test_ollama_down_falls_back_to_rules():
    line = StatusCache().get(CALM, at(f"http://127.0.0.1:{free_port()}"))
    assert line.source == "rules" and "unreachable" in line.why_rules


def test_a_slow_answer_past_the_timeout_falls_back_to_rules(fake):
    assert settings.read({}).status_timeout_s == 20 and settings.read({"STATUS_TIMEOUT": "0.5"}).status_timeout_s == 0.5  # the default, and the variable
    configure_fake(fake, answer_delay=2)
    try:
        line = StatusCache().get(CALM, replace(at(fake.url), status_timeout_s=0.5))
    finally:
        configure_fake(fake, answer_delay=0)
    assert line.source == "rules" and line.why_rules == "phi3:mini did not answer within 0.5 s"


def test_regenerates_at_most_every_30_s_and_sooner_when_a_state_changes(fake):
    configure_fake(fake, answers={"phi3:mini": "Fine."})
    cache = StatusCache()
    first = cache.get(CALM, at(fake.url), now=0)
    assert cache.get(CALM, at(fake.url), now=29).generated_at == first.generated_at
    assert cache.get(CALM, at(fake.url), now=30).generated_at == 30
    hot = Snapshot(**{**vars(CALM), "temperature_c": 90.0})
    assert cache.get(hot, at(fake.url), now=35).generated_at == 30  # changed, but not 10 s yet
    assert cache.get(hot, at(fake.url), now=40).generated_at == 40
    assert cache.model_calls == 3


def test_each_kind_of_advice_starts_at_its_threshold_and_not_before():
    from ui.status import CPU_SHARE, HELD_UP_10M_S, SLOT_WAIT_S, ModelPressure, Snapshot, advise

    def advice(**numbers) -> list[str]:
        return advise(Snapshot(pressure=[ModelPressure("m", **numbers)]))

    assert advice(slot_wait_s=SLOT_WAIT_S) == [] and advice(slot_wait_s=SLOT_WAIT_S + 0.01, in_flight=3) == [
        "m requests wait 510 ms on average for a slot (3 in flight): raise OLLAMA_NUM_PARALLEL or add a host"]
    assert advice(held_up_by={"big:70b": HELD_UP_10M_S - 0.1}) == []
    assert advice(held_up_by={"big:70b": 12.0, "other": 6.0}) == [
        "loads of big:70b hold up m (12 s of waiting in 10 min): keep big:70b loaded (OLLAMA_KEEP_ALIVE, OLLAMA_MAX_LOADED_MODELS) or give it its own host",
        "loads of other hold up m (6.0 s of waiting in 10 min): keep other loaded (OLLAMA_KEEP_ALIVE, OLLAMA_MAX_LOADED_MODELS) or give it its own host"]
    size = 10_000_000_000
    assert advice(size_bytes=size, vram_bytes=size * (1 - CPU_SHARE) + 1) == []
    assert advice(size_bytes=size, vram_bytes=size * 0.62) == ["m runs 38 % on the CPU: a smaller quantisation or num_ctx would fit VRAM"]
    assert advice(size_bytes=size, vram_bytes=0) == []  # a host without GPU memory in use: nothing to fit
    assert advice(size_bytes=None, vram_bytes=None) == []  # not loaded


def test_the_costliest_advice_comes_first():
    from ui.status import ModelPressure, Snapshot, advise

    slow_slots = ModelPressure("a", slot_wait_s=2.0, in_flight=4)  # 2 s a request
    held = ModelPressure("b", held_up_by={"c": 40.0})  # 40 s in 10 min
    first = advise(Snapshot(pressure=[slow_slots, held]))
    assert [line.split()[0] for line in first] == ["loads", "a"]
    slower = ModelPressure("a", slot_wait_s=5.0, in_flight=4)
    assert [line.split()[0] for line in advise(Snapshot(pressure=[slower, held]))] == ["a", "loads"]


def test_the_cut_prompts_and_the_costliest_cause_of_a_lost_prompt_cache_are_advised():
    from ui.status import CACHE_MISSES_1H, CONTEXT_CUT_SHARE, ModelPressure, Snapshot, advise

    def advice(**numbers) -> list[str]:
        return advise(Snapshot(pressure=[ModelPressure("llama3.2", **numbers)]))

    assert advice(context_cut_share=CONTEXT_CUT_SHARE - 0.001, context_length=4096) == []
    assert advice(context_cut_share=0.25, context_length=4096) == ["25 % of llama3.2's prompts were cut to fit its 4096-token context: raise num_ctx"]
    assert advice(cache_lost={"reload": (CACHE_MISSES_1H - 1, 90_000.0)}) == []  # too few turns for a cause
    lost = {"reload": (42.0, 58_000.0), "history_changed": (3.0, 9_000.0), "slot_taken": (2.0, 99_000.0)}
    assert advice(cache_lost=lost, loads_1h={"reload": 14.0, "cold": 1.0}) == [
        "llama3.2 was reloaded 14 times in an hour, and each reload dropped every conversation's prompt cache (58000 tokens read again): "
        "give every client the same num_ctx"]
    assert advice(cache_lost={"unloaded": (3.0, 5_000.0)}, loads_1h={"cold": 1.0}) == [
        "llama3.2 was unloaded and loaded again 1 time in an hour, and each load started with an empty prompt cache (5000 tokens read again): "
        "raise OLLAMA_KEEP_ALIVE (or OLLAMA_MAX_LOADED_MODELS where models evict each other)"]
    assert advice(cache_lost={"slot_taken": (6.0, 30_000.0)}) == [
        "llama3.2 had 6 turns in an hour whose cache other conversations took with the runner's slots (30000 tokens read again): "
        "raise OLLAMA_NUM_PARALLEL (each slot needs its own num_ctx of memory) or run fewer agents on it at once"]
    # weighed by the seconds the re-read tokens took: 58,000 at 1,000 tokens/s leads two seconds of slot waits
    both = advise(Snapshot(pressure=[ModelPressure("llama3.2", cache_lost=lost, loads_1h={"reload": 14.0}, prompt_rate=1000.0),
                                     ModelPressure("other", slot_wait_s=2.0, in_flight=4)]))
    assert [line.split()[0] for line in both] == ["llama3.2", "other"]


def test_the_prompt_line_says_what_the_cache_held_or_which_ollama_does_not_say():
    from ui.format import prompt_cache, prompt_phase

    assert prompt_cache({"cached": 90_000.0, "new": 10_000.0, "read_again": 4_000.0}, ["0.33.3"]) == \
        "Prompt tokens: 90 % read from the cache (90000), 10000 evaluated anew, of which 4000 read again after the cache was lost."
    assert prompt_cache({"cached": 0.0, "new": 500.0, "read_again": None}, []) == "Prompt tokens: 0.0 % read from the cache (0), 500 evaluated anew."
    assert prompt_cache({"cached": None, "new": None}, ["0.32.15", ""]) == \
        "Ollama 0.32.15 does not report its prompt cache (0.33.3 and later do): no cache-hit share or prompt rate on new tokens."
    assert prompt_cache({"cached": None, "new": None}, ["0.40.1"]) == "Prompt cache: — no prompt tokens with a reported cached count in this window."
    entry = {"input_tokens": 68_000, "prompt_cached_tokens": 10_000, "cache_miss": "history_changed", "read_again_tokens": 57_000}
    assert prompt_phase(entry) == "prompt evaluation (58,000 new, 10,000 cached; 57,000 read again: cache lost, history changed)"
    assert prompt_phase({"input_tokens": 10, "prompt_cached_tokens": None}) == "prompt evaluation"


def test_what_ollamas_log_tells_is_advised_from_its_thresholds():
    from ui.status import BYPASSED_1H, LOG_UNKNOWN_SHARE, Cut, RunnerSettings, Snapshot, advise

    assert advise(Snapshot(served_1h=1900.0, proxied_1h=1900.0 - BYPASSED_1H + 1)) == []
    assert advise(Snapshot(served_1h=1900.0, proxied_1h=1488.0)) == [
        "412 of 1,900 requests in the last hour reached Ollama without the proxy, and its numbers miss them: point those clients at the proxy, "
        "or let Ollama listen on 127.0.0.1 only (OLLAMA_HOST)"]
    assert advise(Snapshot(served_1h=12.0)) == [  # nothing through the proxy at all
        "12 of 12 requests in the last hour reached Ollama without the proxy, and its numbers miss them: point those clients at the proxy, "
        "or let Ollama listen on 127.0.0.1 only (OLLAMA_HOST)"]
    assert advise(Snapshot(proxied_1h=50.0)) == []  # no log read: nothing said
    assert advise(Snapshot(truncations_1h={"qwen3-coder:30b": Cut(3.0, 80_000.0, 48_000.0), "": Cut(1.0), "phi3:mini": Cut(0.4, 900.0, 400.0)})) == [
        "Ollama cut 48,000 of 80,000 prompt tokens (3 prompts) to qwen3-coder:30b in the last hour to fit its context (the answers came back 200 OK "
        "without the start of the prompt): raise num_ctx or OLLAMA_CONTEXT_LENGTH",
        "Ollama cut 1 prompt to a model in the last hour to fit its context (the answers came back 200 OK without the start of the prompt): "
        "raise num_ctx or OLLAMA_CONTEXT_LENGTH"]
    one_slot, on_cpu = RunnerSettings("gpu:9100", "qwen3-vl:8b", 1, "auto"), RunnerSettings("gpu:9100", "llama3.2:1b", 4, "0")
    assert advise(Snapshot(runners=[one_slot, on_cpu], num_parallel={"gpu:9100": 4.0}, gpu_hosts={"gpu:9100"})) == [
        "llama3.2:1b runs on the CPU alone (num_gpu 0: no layers on the GPU) on a host with a GPU: drop num_gpu 0 from its clients' options or its Modelfile",
        "qwen3-vl:8b's runner has 1 slot where OLLAMA_NUM_PARALLEL asks for 4: Ollama runs it one request at a time (an embedding model, or an "
        "architecture not safe in parallel), so its requests queue; send it fewer at once or give it a host of its own"]
    assert advise(Snapshot(runners=[one_slot, on_cpu], num_parallel={"gpu:9100": 1.0})) == []  # as asked; a host with no GPU read
    assert advise(Snapshot(runners=[one_slot, on_cpu])) == []  # OLLAMA_NUM_PARALLEL not known: Ollama's start not in the log read
    assert advise(Snapshot(log_unknown_share=LOG_UNKNOWN_SHARE - 0.01)) == []
    assert advise(Snapshot(log_unknown_share=0.8)) == [
        "80 % of Ollama's log lines in the last hour were of no shape the collector knows: Ollama's log format changed; upgrade the collector"]
