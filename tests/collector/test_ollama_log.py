"""hw_collector/sources/ollama_log.py: the fake's server log (tests/fake/server_log.py, Ollama's shapes) read into
the collector's readings and into what each slot is doing now."""

from __future__ import annotations

import pytest

from hw_collector import instruments as m
from hw_collector.sources.ollama_log import OllamaLogSource, ServerLog
from tests.fake.server_log import ServerLog as Writer


def values(readings, metric: str) -> dict[tuple, float]:
    return {tuple(sorted(r.attributes.items())): r.value for r in readings if r.metric == metric}


def test_requests_truncations_and_runners_are_counted_from_the_log(tmp_path):
    path = tmp_path / "server.log"
    log = Writer(path)
    log.server_config(4)  # Ollama's start, before the collector's: its settings are read from the log's past
    log.runner_started("/root/.ollama/models/blobs/sha256-old", 4096, 4, 50000)  # but not its runners, nor anything counted
    log.truncated(4095, 5000, 4, 2049)
    source = OllamaLogSource(str(path), "http://127.0.0.1:9")
    try:
        assert source.available() is None
        assert values(source.read(), m.SERVER_NUM_PARALLEL) == {(): 4}
        log.runner_started("/root/.ollama/models/blobs/sha256-abc", 8192, 4, 50001)
        for status, path_ in ((200, "/api/chat"), (200, "/api/chat"), (200, "/v1/messages"), (404, "/api/show"), (200, "/api/blobs/sha256:1")):
            log.access(status, 0.25, "127.0.0.1", "POST", path_)
        log.truncated(8191, 9000, 4, 4099)
        log.write("goroutine 7 [running]:")
        source.poll()
        readings = source.read()
    finally:
        source.close()
    assert values(readings, m.LOG_LINES) == {(("parsed", "true"),): 7, (("parsed", "false"),): 1}
    assert values(readings, m.SERVER_REQUESTS) == {
        (("route", "/api/chat"), ("status", "200")): 2, (("route", "/v1/messages"), ("status", "200")): 1,
        (("route", "/api/show"), ("status", "404")): 1, (("route", "/api/blobs/{digest}"), ("status", "200")): 1}
    assert values(readings, m.PROMPT_TRUNCATIONS) == {(("model", "sha256-abc"),): 1}  # one runner: the cut was its
    assert values(readings, m.TRUNCATED_TOKENS) == {(("model", "sha256-abc"), ("ollama.tokens", "prompt")): 9000,
                                                    (("model", "sha256-abc"), ("ollama.tokens", "cut")): 9000 - 4099}
    assert values(readings, m.RUNNER_INFO) == {(("context_per_slot", "8192"), ("flash_attention", "auto"), ("gpu_layers", "auto"), ("kv_cache_type", "f16"),
                                                ("model", "sha256-abc"), ("slots", "4")): 1}


def test_ollama_started_again_brings_its_new_settings_and_ends_its_runners(tmp_path):
    path = tmp_path / "server.log"
    path.write_text("")
    source = OllamaLogSource(str(path), "http://127.0.0.1:9")
    try:
        assert source.available() is None
        log = Writer(path)
        log.runner_started("/root/.ollama/models/blobs/sha256-abc", 8192, 1, 50001, num_gpu=0)
        source.poll()
        assert values(source.read(), m.SERVER_NUM_PARALLEL) == {}  # not known: no start of Ollama in the log
        (ran,) = values(source.read(), m.RUNNER_INFO)
        assert dict(ran)["gpu_layers"] == "0"  # num_gpu 0: the CPU alone
        log.server_config(2)
        source.poll()
        readings = source.read()
    finally:
        source.close()
    assert values(readings, m.SERVER_NUM_PARALLEL) == {(): 2} and values(readings, m.RUNNER_INFO) == {}


def test_a_log_that_is_missing_is_the_sources_problem_until_it_appears(tmp_path):
    path = tmp_path / "server.log"
    source = OllamaLogSource(str(path), "http://127.0.0.1:9")
    try:
        assert source.available() is None
        with pytest.raises(RuntimeError, match="no log at"):
            source.read()
        Writer(path).access(200, 0.1, "127.0.0.1", "GET", "/api/ps")
        source.poll()
        assert values(source.read(), m.SERVER_REQUESTS) == {(("route", "/api/ps"), ("status", "200")): 1}
    finally:
        source.close()
    assert OllamaLogSource("off", "http://127.0.0.1:9").available() == "--ollama-log off"


def test_a_prompt_being_read_has_its_progress_rate_and_time_left(tmp_path):
    writer = Writer(tmp_path / "server.log")
    task = writer.task(2, 32768, 20000)
    writer.batch(2, task, 4000)  # the cache held 4,000 tokens
    writer.batch(2, task, 6048)
    writer.batch(2, task, 8096)
    state = ServerLog()
    lines = writer.path.read_text().splitlines()
    for at, line in zip((0.0, 0.1, 1.1, 2.1), lines):
        state.take(line, at, 1_800_000_000.0 + at)
    (slot,) = state.slots.values()
    now = slot.as_json(2.1)
    assert (now["phase"], now["prompt_tokens"], now["cached_tokens"], now["read_tokens"]) == ("reading", 20000, 4000, 8096)
    assert now["tokens_per_second"] == pytest.approx(2048.0)  # from the first batch on: the cache's tokens were not read
    assert now["eta_s"] == pytest.approx((20000 - 8096) / 2048)
    writer.prompt_done(2, task, 5.8, 16000)
    writer.released(2, task, 20010)
    done, released = writer.path.read_text().splitlines()[4:]
    state.take(done, 8.0, 1_800_000_008.0)
    assert slot.as_json(8.0)["phase"] == "generating" and slot.as_json(8.0)["eta_s"] is None
    state.take(released, 9.0, 1_800_000_009.0)
    assert state.slots == {}


def test_the_mlx_runners_prompt_is_one_request_read_a_chunk_at_a_time(tmp_path):
    """x/mlxrunner/pipeline.go: a line a chunk of 2,048, no slot; read once one token is left, and a line that does not
    go on from the one before is another request."""
    writer = Writer(tmp_path / "server.log")
    for processed in (2048, 4096, 9999, 2048):
        writer.mlx_progress(processed, 10000)
    first, second, last, again = writer.path.read_text().splitlines()
    state = ServerLog()
    state.take(first, 1.0, 1_800_000_001.0)
    state.take(second, 2.0, 1_800_000_002.0)
    (slot,) = state.slots.values()
    now = slot.as_json(2.5)
    assert (now["slot"], now["phase"], now["prompt_tokens"], now["read_tokens"], now["cached_tokens"]) == (None, "reading", 10000, 4096, None)
    assert now["tokens_per_second"] == pytest.approx(2048.0) and now["eta_s"] == pytest.approx((10000 - 4096) / 2048)
    state.take(last, 3.0, 1_800_000_003.0)
    assert state.slots == {}  # read: the runner does not log what it generates
    state.take(again, 4.0, 1_800_000_004.0)
    (slot,) = state.slots.values()
    assert (slot.read, slot.task, slot.since) == (2048, 2, 1_800_000_004.0)
    state.take(first.replace("processed=2048", "processed=4096").replace("total=10000", "total=30000"), 5.0, 1_800_000_005.0)
    assert [(s.prompt_tokens, s.read) for s in state.slots.values()] == [(30000, 4096)]  # another total: another request
    state.take("[GIN] 2026/08/21 - 14:03:27 | 200 |  1.5s |       127.0.0.1 | POST     \"/api/chat\"", 5.0 + 61.0, 1_800_000_066.0)
    assert state.slots == {}  # a minute with no line: it ended (or stopped) unlogged


def test_a_slot_is_the_runners_that_was_started_with_its_context_where_one_was(tmp_path):
    writer = Writer(tmp_path / "server.log")
    writer.runner_started("/root/.ollama/models/blobs/sha256-a", 8192, 4, 50001)
    writer.runner_started("/root/.ollama/models/blobs/sha256-b", 4096, 2, 50002)
    writer.runner_started("/root/.ollama/models/blobs/sha256-c", 4096, 1, 50003)
    writer.task(0, 8192, 100)
    writer.task(1, 4096, 100)  # b's or c's: not told
    state = ServerLog()
    for line in writer.path.read_text().splitlines():
        state.take(line, 1.0, 1_800_000_001.0)
    assert sorted((slot.context, slot.model_path) for slot in state.slots.values()) == [(4096, None), (8192, "/root/.ollama/models/blobs/sha256-a")]
