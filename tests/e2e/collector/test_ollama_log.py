"""Ollama's server log as the collector reads it: the fake writing its log as Ollama does (tests/fake/server_log.py),
the collector following it (--ollama-log) as real processes, requests sent straight to Ollama and through the proxy."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.harness import configure_fake, fake_ollama, hw_collector, otel_proxy, scrape, until


def generate(url: str, prompt: str = "hi", **options: object) -> None:
    httpx.post(url + "/api/generate", json={"model": "llama3.2:1b", "prompt": prompt, "stream": False, "options": {"num_predict": 2, **options}},
               timeout=120).raise_for_status()


def test_requests_that_bypassed_the_proxy_truncations_and_the_runner_are_read_from_the_log(tmp_path):
    log = tmp_path / "logs" / "server.log"  # not there when the collector starts: Ollama's first line makes it
    (tmp_path / "logs").mkdir()
    with (
        fake_ollama(log=log) as fake,
        otel_proxy(fake.url) as proxy,
        hw_collector(fake.url, "--interval", "0.2", "--ollama-log", str(log), "--sysfs-root", str(tmp_path)) as collector,
    ):
        configure_fake(fake, parallel=2)
        direct, through = 3, 2
        for _ in range(direct):
            generate(fake.url)
        for _ in range(through):
            generate(proxy.url)
        generate(proxy.url, "word " * 600, num_ctx=512)  # cut to fit: Ollama warns "truncating input prompt"
        served = lambda: scrape(collector.url).value("ollama_server_requests_total", route="/api/generate", status="200")  # noqa: E731
        until(lambda: served() == direct + through + 1)
        metrics = scrape(collector.url)
        proxied = scrape(proxy.url).value("http_server_request_duration_seconds_count", http_route="/api/generate")
        assert proxied == through + 1  # the proxy saw its own; Ollama's log, all of them
        (runner,) = metrics.series("ollama_runner_info")  # the num_ctx change reloaded the model: its new runner, in place of the old
        # named as /api/ps names it: the blob's path in the log, found on the FROM line of /api/show's modelfile
        assert (runner["model"], runner["context_per_slot"], runner["slots"], runner["kv_cache_type"], runner["gpu_layers"]) == ("llama3.2:1b", "512", "2", "f16", "auto")
        assert metrics.value("ollama_prompt_truncations_total", model="llama3.2:1b") == 1
        (cut,) = [line for line in log.read_text().splitlines() if '"truncating input prompt"' in line]  # as the fake's runner cut it
        said = dict(pair.split("=") for pair in cut.split('"truncating input prompt" ')[1].split(" "))
        (truth,) = [entry for entry in httpx.get(fake.url + "/fake/schedule").json() if entry["truncated"]]
        assert int(said["new"]) == truth["prompt_tokens"] and int(said["prompt"]) >= 600
        assert metrics.value("ollama_prompt_truncated_tokens_total", model="llama3.2:1b", ollama_tokens="prompt") == int(said["prompt"])
        assert metrics.value("ollama_prompt_truncated_tokens_total", model="llama3.2:1b", ollama_tokens="cut") == int(said["prompt"]) - truth["prompt_tokens"]
        assert metrics.value("ollama_server_num_parallel") == 2  # its "server config" line: OLLAMA_NUM_PARALLEL=2
        assert metrics.value("hw_collector_source_up", source="ollama_log") == 1
        assert metrics.value("ollama_log_lines_total", parsed="false") == 0
        assert httpx.get(collector.url + "/-/live").json()["requests"] == []  # nothing in flight


def test_a_long_prompts_progress_and_time_left_reach_live(tmp_path):
    """A 20,000-token prompt read a batch of 2,048 a second: each batch's line reaches /-/live within 2 s of when it is
    in the log (this test reads both), and the time left said at the first rate is within 25 % of the time it took."""
    log = tmp_path / "server.log"
    with fake_ollama(log=log) as fake, hw_collector(fake.url, "--interval", "0.5", "--ollama-log", str(log), "--sysfs-root", str(tmp_path)) as collector:
        generate(fake.url)  # loaded: the long prompt's wait is all reading
        # the collector has read that request through (Gin's line comes after its slot's release): the one slot /-/live shows next is the long prompt's
        until(lambda: scrape(collector.url).value("ollama_server_requests_total", route="/api/generate", status="200") == 1)
        configure_fake(fake, prompt_token_ms=0.5)
        offset = log.stat().st_size
        sent = threading.Thread(target=generate, args=(fake.url, "word " * 20_000), kwargs={"num_ctx": 32768})
        sent.start()
        in_log: dict[int, float] = {}  # tokens in the slot -> when this test saw the batch's line in the log
        on_live: dict[int, float] = {}  # -> when /-/live first said as much
        first_eta: tuple[float, float] | None = None  # (when, the time left it said)
        generating_at, prompt_tokens = None, 0
        deadline = time.monotonic() + 60
        try:
            while generating_at is None:
                with log.open() as text:
                    text.seek(offset)
                    for line in text.read().splitlines():
                        if "cached n_tokens = " in line:
                            in_log.setdefault(int(line.split("cached n_tokens = ")[1].split(",")[0]), time.monotonic())
                (slot,) = httpx.get(collector.url + "/-/live").json()["requests"] or [None]
                seen = time.monotonic()
                if slot is not None:
                    prompt_tokens = slot["prompt_tokens"]
                if slot is not None and slot["phase"] == "reading":
                    on_live.setdefault(slot["read_tokens"], seen)
                    if first_eta is None and slot["eta_s"] is not None:
                        first_eta = (seen, slot["eta_s"])
                elif (slot is not None and slot["phase"] == "generating") or (slot is None and on_live and not sent.is_alive()):
                    generating_at = seen
                assert seen < deadline, (in_log, on_live)
                time.sleep(0.05)
        finally:
            sent.join()
    assert prompt_tokens >= 20_000 and len(in_log) == -(-prompt_tokens // 2048)  # a line a batch of 2,048
    lags = {tokens: on_live[tokens] - at for tokens, at in in_log.items() if tokens in on_live}
    assert len(lags) >= len(in_log) - 1 and all(lag <= 2.0 for lag in lags.values()), lags  # a batch may pass between two reads of /-/live
    assert first_eta is not None
    assert first_eta[1] == pytest.approx(generating_at - first_eta[0], rel=0.25)


def test_an_mlx_models_prompt_reaches_live_and_now_with_its_client(tmp_path):
    """An MLX model (x/mlxrunner: no llama-server, no slot) read a chunk of 2,048 at a time: its progress at /-/live,
    joined on the page's "Now" with the request the proxy passed on."""
    from ui import now

    log = tmp_path / "server.log"
    mlx = "qwen3:8b-mlx"
    with (
        fake_ollama(log=log, load_delay=0.05) as fake,
        otel_proxy(fake.url) as proxy,
        hw_collector(fake.url, "--interval", "0.5", "--ollama-log", str(log), "--sysfs-root", str(tmp_path)) as collector,
    ):
        configure_fake(fake, add_models={mlx: {"size": 5_000_000_000, "size_vram": 5_000_000_000, "family": "qwen3", "mlx": True}}, prompt_token_ms=0.5)
        body = {"model": mlx, "prompt": "word " * 12_000, "stream": False, "options": {"num_predict": 2, "num_ctx": 16384}}
        sent = threading.Thread(target=httpx.post, args=(proxy.url + "/api/generate",), kwargs={"json": body, "headers": {"X-Client-Name": "mlx-agent"}, "timeout": 120})
        sent.start()
        try:
            def reading() -> list[now.Row]:
                found = now.rows(*now.read(collector.url, proxy.url))
                return found if found and found[0].phase == now.READING and (found[0].read_tokens or 0) >= 4096 and found[0].eta_s else []

            (row,) = until(reading, deadline_s=60)
        finally:
            sent.join()
        assert (row.client, row.model, row.prompt_tokens) == ("mlx-agent", mlx, 12_000) and row.read_tokens % 2048 == 0
        until(lambda: httpx.get(collector.url + "/-/live").json()["requests"] == [])  # read: its row goes
    text = log.read_text()
    assert "starting llama-server" not in text and "new prompt" not in text  # the MLX runner is no llama-server
