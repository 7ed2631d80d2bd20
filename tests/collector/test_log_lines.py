"""hw_collector/log_lines.py on real lines: llama.cpp's own server (xllamacpp, b11549) as Ollama runs it, the lines
quoted from Ollama's Go source, and the fake's log (tests/fake/server_log.py) held line for line to the real server's."""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from hw_collector import log_lines as lines
from tests.fake.server_log import ServerLog
from tests.support.llama_server import N_VOCAB, serving, write_model

PROMPT = [101] + [random.Random(1).randrange(3, N_VOCAB) for _ in range(3808)]
# (prompt, tokens generated): a cold prompt read in two batches, the same conversation one turn on (read from the
# cache), and one longer than the slot's context (refused: llama-server says so and releases the slot)
REQUESTS = [(PROMPT, 4), (PROMPT + [7] * 50, 4), ([7] * 5000, 0)]


def slot_events(text: str) -> list[lines.Event]:
    """The slot events of a log, task ids and times left out (each server numbers and times them its own way)."""
    events = []
    for line in text.splitlines():
        event = lines.parse(line)
        if isinstance(event, (lines.PromptStarted, lines.PromptRead, lines.PromptDone, lines.SlotReleased)):
            events.append(replace(event, task=0, **({"seconds": 0.0} if isinstance(event, lines.PromptDone) else {})))
    return events


def test_the_real_llama_servers_slot_lines_and_the_fakes_read_the_same():
    with tempfile.TemporaryDirectory() as directory:
        model = write_model(Path(directory) / "tiny.gguf")
        with serving(model, "--np", "1") as server, httpx.Client(base_url=server.url, timeout=120) as client:
            for prompt, generated in REQUESTS:
                answer = client.post("/completion", json={"prompt": prompt, "n_predict": generated or 4, "cache_prompt": True, "temperature": 0.0, "ignore_eos": True})
                assert answer.status_code == (200 if generated else 400)
            deadline = time.monotonic() + 30  # the refused request's slot is released after its answer has gone
            while sum(isinstance(event, lines.SlotReleased) for event in slot_events(server.log())) < len(REQUESTS):
                assert time.monotonic() < deadline, server.log()[-3000:]
            real = slot_events(server.log())
            # the rest of what it writes, its loading included, is of shapes known too: the few unknown lines are a
            # multi-line message's (the chat template's example)
            written = server.log().splitlines()
            assert len([line for line in written if lines.parse(line) is None]) <= 0.1 * len(written)
        fake = ServerLog(Path(directory) / "fake.log")
        task = fake.task(0, 4096, 3809)
        fake.batch(0, task, 0)
        fake.batch(0, task, 2048)
        fake.prompt_done(0, task, 0.5, 3809)
        fake.released(0, task, 3809 + 3)  # the last token generated is not in the slot yet
        task = fake.task(0, 4096, 3859)
        fake.batch(0, task, 3809)
        fake.prompt_done(0, task, 0.1, 50)
        fake.released(0, task, 3859 + 3)
        task = fake.task(0, 4096, 5000)
        fake.released(0, task, 3859 + 3)  # refused: the slot still holds the last conversation
        modelled = slot_events(fake.path.read_text())
    assert real == [
        lines.PromptStarted(0, 0, 4096, 3809), lines.PromptRead(0, 0, 0), lines.PromptRead(0, 0, 2048), lines.PromptDone(0, 0, 0.0, 3809), lines.SlotReleased(0, 0, 3812, False),
        lines.PromptStarted(0, 0, 4096, 3859), lines.PromptRead(0, 0, 3809), lines.PromptDone(0, 0, 0.0, 50), lines.SlotReleased(0, 0, 3862, False),
        lines.PromptStarted(0, 0, 4096, 5000), lines.SlotReleased(0, 0, 3862, False)]
    assert modelled == real


def test_ollamas_own_lines_as_its_source_writes_them():
    """Gin's access line (gin v1.10.0 ``defaultLogFormatter``), and slog's records (logutil.NewLogger) of
    llm/llama_server.go and x/mlxrunner/pipeline.go."""
    assert lines.parse('[GIN] 2026/08/21 - 14:03:27 | 200 |  1.503217894s |       127.0.0.1 | POST     "/api/chat"') == lines.Access(200, "POST", "/api/chat", 1.503217894)
    assert lines.parse('[GIN] 2026/08/21 - 14:03:27 | 404 |     512.3µs |             ::1 | GET      "/api/blobs/sha256:abc?x=1"') == lines.Access(404, "GET", "/api/blobs/{digest}", pytest.approx(0.0005123))
    assert lines.parse('[GIN] 2026/08/21 - 14:03:27 | 200 |       2m3s |      10.0.0.7 | POST     "/no/such/route"') == lines.Access(200, "POST", "other", 123.0)
    coloured = '[GIN] 2026/08/21 - 14:03:27 |\x1b[97;42m 200 \x1b[0m|     1.2ms |       127.0.0.1 |\x1b[97;46m POST    \x1b[0m "/v1/messages"'
    assert lines.parse(coloured) == lines.Access(200, "POST", "/v1/messages", 0.0012)  # ollama serve on a terminal
    started = ('time=2026-08-21T14:03:27.123-07:00 level=INFO source=llama_server.go:433 msg="starting llama-server" cmd="/usr/lib/ollama/llama-server '
               '--model /root/.ollama/models/blobs/sha256-6a0746a1ec1a --port 38211 --host 127.0.0.1 --no-webui --offline -c 16384 -np 4 --log-verbosity 4 '
               '--no-log-prefix --no-log-timestamps --cache-type-k q8_0 --cache-type-v q8_0 --flash-attn on -ngl 0"')
    assert lines.parse(started) == lines.RunnerStarted("/root/.ollama/models/blobs/sha256-6a0746a1ec1a", 4096, 4, "q8_0", "on", "0", 38211)
    defaults = started.replace(" --cache-type-k q8_0 --cache-type-v q8_0 --flash-attn on -ngl 0", "").replace("-np 4", "-np 1")
    assert lines.parse(defaults) == lines.RunnerStarted("/root/.ollama/models/blobs/sha256-6a0746a1ec1a", 16384, 1, "f16", "auto", "auto", 38211)
    truncated = 'time=2026-08-21T14:03:29.001Z level=WARN source=llama_server.go:812 msg="truncating input prompt" limit=2047 prompt=5000 keep=4 new=2047'
    assert lines.parse(truncated) == lines.Truncated(2047, 5000, 4, 2047)
    # server/routes.go Serve: slog.Info("server config", "env", envconfig.Values()), a map[string]string as fmt prints it
    config = ('time=2026-08-21T14:03:26.861+09:00 level=INFO source=routes.go:1951 msg="server config" env="map[CUDA_VISIBLE_DEVICES: HTTPS_PROXY: '
              'OLLAMA_CONTEXT_LENGTH:0 OLLAMA_KV_CACHE_TYPE: OLLAMA_MAX_LOADED_MODELS:0 OLLAMA_NUM_PARALLEL:4 OLLAMA_ORIGINS:[http://localhost '
              'app://* file://*] ROCR_VISIBLE_DEVICES:]"')
    assert lines.parse(config) == lines.ServerConfig(4)
    assert lines.parse(config.replace("OLLAMA_NUM_PARALLEL:4 ", "")) == lines.ServerConfig(None)  # a release that names it otherwise
    mlx = 'time=2026-08-21T14:03:29.001+02:00 level=INFO source=pipeline.go:204 msg="Prompt processing progress" processed=1024 total=20000'
    assert lines.parse(mlx) == lines.MlxProgress(1024, 20000)
    assert lines.parse('time=2026-08-21T14:03:29.001Z level=INFO source=routes.go:1500 msg="Listening on 127.0.0.1:11434 (version 0.32.15)"') == lines.OTHER
    assert lines.parse('time=2026-08-21T14:03:29.001Z level=INFO source=server.go:1 msg=plain key=value') == lines.OTHER


def test_a_line_of_no_known_shape_is_unknown_and_a_broken_known_one_tells_nothing():
    for line in ("goroutine 1 [running]:", "panic: runtime error: index out of range", "\x00\x01\x02", "[GIN] 2026/08/21 | what"):
        assert lines.parse(line) is None, line
    assert lines.parse('time=2026-08-21T14:03:29.001Z level=WARN source=llama_server.go:812 msg="truncating input prompt" limit=x') == lines.OTHER
    assert lines.parse('time=2026-08-21T14:03:27.123Z level=INFO source=llama_server.go:433 msg="starting llama-server" cmd="/bin/llama-server -c 4096"') == lines.OTHER
    assert lines.parse("slot update_slots: id  0 | task 3 | something new in a later release") == lines.OTHER
