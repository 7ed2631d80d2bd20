"""Numbers as a person reads them; missing values as "—", never 0."""

from __future__ import annotations

import math

import pytest

from ui import format as fmt


@pytest.mark.parametrize(
    ("function", "value", "expected"),
    [
        (fmt.seconds, 0.85, "850 ms"),
        (fmt.seconds, 0.0042, "4.2 ms"),
        (fmt.seconds, 1.234, "1.2 s"),
        (fmt.seconds, 42.0, "42 s"),
        (fmt.seconds, 150.0, "2.5 min"),
        (fmt.bytes_, 3.2 * 2**30, "3.2 GiB"),
        (fmt.bytes_, 512.0, "512 B"),
        (fmt.bytes_, 1536.0, "1.5 KiB"),
        (fmt.percent, 0.42, "42 %"),
        (fmt.percent, 0.056, "5.6 %"),
        (fmt.percent, 1.0, "100 %"),
        (fmt.rate, 57.34, "57.3 /s"),
        (fmt.rate, 1234.0, "1,234 /s"),
        (fmt.watts, 14.872, "14.9 W"),
        (fmt.watts, 412.3, "412 W"),
        (fmt.celsius, 66.4, "66 °C"),
        (fmt.joules, 0.5, "0.50 J"),
        (fmt.joules, 0.042, "42.0 mJ"),
        (fmt.count, 3.0, "3"),
    ],
)
def test_values_read_as_a_person_reads_them(function, value, expected):
    assert function(value) == expected


@pytest.mark.parametrize("function", [fmt.seconds, fmt.bytes_, fmt.percent, fmt.rate, fmt.watts, fmt.celsius, fmt.joules, fmt.count])
@pytest.mark.parametrize("missing", [None, math.nan, math.inf])
def test_no_data_is_a_dash_never_zero(function, missing):
    assert function(missing) == "—"


def test_plain_escapes_every_markdown_trigger():
    assert fmt.plain("GPU $5$ :red[hot] <b>x</b> **bold** 1. item") == r"GPU \$5\$ \:red\[hot\] \<b\>x\</b\> \*\*bold\*\* 1\. item"


def test_age():
    assert (fmt.age(0.2), fmt.age(12), fmt.age(600)) == ("just now", "12 s ago", "10 min ago")


def test_waterfall_lays_every_second_of_a_request_back_to_back():
    entry = {"duration_s": 3.5, "load_duration_s": 1.5, "pending_wait_s": 0.75, "waited_behind": ["qwen2.5:7b"], "drain_s": 0.25, "load_s": 0.5,
             "load_reason": "reload", "reload_cause": "num_ctx 4096 -> 8192", "slot_wait_s": 0.5, "unknown_s": None,
             "prompt_eval_s": 0.25, "eval_s": 1.0, "ollama_total_s": 3.375, "ollama_other_s": 0.125, "proxy_s": 0.125, "time_to_first_token_s": 1.8}
    rows = fmt.waterfall(entry)
    assert [(r["phase"], r["start"], r["end"]) for r in rows] == [
        ("waiting behind loads (qwen2.5:7b)", 0.0, 0.75), ("draining the old runner", 0.75, 1.0), ("model reload (num_ctx 4096 -> 8192)", 1.0, 1.5),
        ("waiting for a slot", 1.5, 2.0), ("prompt evaluation", 2.0, 2.25), ("generation", 2.25, 3.25),
        ("Ollama, other (templating, tokenizing)", 3.25, 3.375), ("proxy and network", 3.375, 3.5),
    ]
    assert rows[2]["duration"] == "500 ms"
    unknown = fmt.waterfall({**entry, "load_reason": "unknown", "pending_wait_s": None, "drain_s": None, "load_s": None, "unknown_s": 1.5})
    assert [(r["phase"], r["end"]) for r in unknown[:2]] == [("queue or load (not told apart)", 1.5), ("waiting for a slot", 2.0)]
    before = fmt.waterfall({"duration_s": 3.0, "queue_wait_s": 1.0, "load_s": 0.5, "load_reason": "cold", "prompt_eval_s": 0.25, "eval_s": 1.0, "ollama_total_s": 2.875, "ollama_other_s": 0.125, "proxy_s": 0.125})
    assert [r["phase"] for r in before[:2]] == ["waiting for a slot", "model load"]  # an entry from a proxy before the slot wait was told apart


def test_waterfall_of_an_older_entry_puts_the_unexplained_time_first():
    rows = fmt.waterfall({"duration_s": 2.0, "load_s": 0.5, "prompt_eval_s": 0.25, "eval_s": 1.0, "time_to_first_token_s": 0.8})
    assert [(r["phase"], r["start"], r["end"]) for r in rows] == [
        ("queue and overhead", 0.0, 0.25), ("model load", 0.25, 0.75), ("prompt evaluation", 0.75, 1.0), ("generation", 1.0, 2.0),
    ]


def test_waterfall_of_an_answer_without_phases_shows_what_the_proxy_saw():
    """The Responses and Anthropic APIs and cloud models report no durations: not "all queue"."""
    rows = fmt.waterfall({"duration_s": 3.0, "load_s": None, "prompt_eval_s": None, "eval_s": None, "time_to_first_token_s": 1.25})
    assert [(r["phase"], r["start"], r["end"]) for r in rows] == [("until the first token", 0.0, 1.25), ("streaming the answer", 1.25, 3.0)]
    assert [r["phase"] for r in fmt.waterfall({"duration_s": 0.4, "time_to_first_token_s": None})] == ["whole request (no phases reported)"]


def test_waterfall_of_an_answer_ollama_did_not_time_shows_the_waits_the_proxy_told():
    """A /v1 answer: Ollama reports no durations, but the slot wait (replayed) and a reload's waits are known."""
    entry = {"duration_s": 3.0, "time_to_first_token_s": 1.5, "pending_wait_s": 0.25, "drain_s": 0.5, "load_s": None, "slot_wait_s": 0.25,
             "load_reason": "reload", "reload_cause": "num_ctx 8192 -> 4096", "prompt_eval_s": None, "eval_s": None,
             "ollama_total_s": None, "ollama_other_s": None, "proxy_s": None}
    rows = fmt.waterfall(entry)
    assert [(r["phase"], r["start"], r["end"]) for r in rows] == [
        ("waiting behind loads", 0.0, 0.25), ("draining the old runner", 0.25, 0.75), ("waiting for a slot", 0.75, 1.0),
        ("load, prompt and first token (not told apart)", 1.0, 1.5), ("streaming the answer", 1.5, 3.0)]
    warm = fmt.waterfall({**entry, "pending_wait_s": 0.0, "drain_s": 0.0, "load_s": 0.0, "load_reason": None, "time_to_first_token_s": None})
    assert [(r["phase"], r["end"]) for r in warm] == [("waiting for a slot", 0.25), ("the rest (not told apart)", 3.0)]


def test_shares_of_the_generation_time_say_no_data_rather_than_zero():
    assert fmt.shares({"queueing": 1.0, "loading": 0.5, "prompt evaluation": None, "generation": 2.5, "all": 5.0}) == {
        "queueing": 0.2, "loading": 0.1, "prompt evaluation": None, "generation": 0.5, fmt.REST: pytest.approx(0.2)}
    assert sum(fmt.shares({"slot": 3.0, "generation": 2.0, "all": 4.0}).values()) == 1.25  # more than the whole: never a negative rest
    assert fmt.shares({"slot": 3.0, "generation": 2.0, "all": 4.0})[fmt.REST] == 0.0
    assert fmt.shares({"queueing": None, "all": None}) == {} and fmt.shares({"queueing": 0.0, "all": 0.0}) == {}


def test_waterfall_of_a_tool_call_first_and_of_a_cloud_model_says_what_the_time_was():
    call = {"duration_s": 2.0, "time_to_first_token_s": 1.75, "first_output": "tool_call", "pending_wait_s": 0.0, "drain_s": 0.0, "load_s": 0.0,
            "slot_wait_s": 0.0, "prompt_eval_s": None, "eval_s": None, "ollama_total_s": None, "ollama_other_s": None, "proxy_s": None}
    assert [(r["phase"], r["end"]) for r in fmt.waterfall(call)] == [("prompt and the whole tool call (sent once complete)", 1.75), ("closing the answer", 2.0)]
    bare = fmt.waterfall({"duration_s": 2.0, "time_to_first_token_s": 1.75, "first_output": "tool_call"})
    assert [r["phase"] for r in bare] == ["prompt and the whole tool call (sent once complete)", "closing the answer"]
    cloud = {"duration_s": 3.0, "time_to_first_token_s": 0.5, "first_output": "text", "cloud": True, "load_s": None, "prompt_eval_s": None}
    assert [(r["phase"], r["end"]) for r in fmt.waterfall(cloud)] == [("cloud (ollama.com): until the first token", 0.5), ("cloud: streaming the answer", 3.0)]
    assert [r["phase"] for r in fmt.waterfall({**cloud, "time_to_first_token_s": None})] == ["cloud (ollama.com), whole request"]


def test_a_runners_settings_read_from_its_labels():
    labels = {"model": "qwen3-coder:30b", "context_per_slot": "8192", "slots": "4", "kv_cache_type": "q8_0", "flash_attention": "on", "gpu_layers": "0"}
    assert fmt.runner(labels) == "4 slots × 8,192 tokens, KV q8_0, flash attention on, GPU layers 0"
    assert fmt.runner({**labels, "slots": "1", "context_per_slot": ""}) == "1 slot, KV q8_0, flash attention on, GPU layers 0"
    assert fmt.runner({}) == "slots ?, KV ?, flash attention ?, GPU layers ?"
