"""Numbers that stay right once Ollama ships its own /metrics (issue 24).

An open Ollama pull request (#18508, shared/ollama-facts.md) publishes four of this project's names
with labels of its own. The fake serves such a /metrics (tests/fake/ollama.py ``metrics``); one real
Prometheus scrapes it beside the proxy and the collector, another scrapes only those two. The page's
queries must read the same from both, while a query that does not select the job would count twice.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.harness import configure_fake, fake_ollama, hw_collector, otel_proxy, prometheus
from ui import queries
from ui.queries import Filters, Prometheus

COLLIDING = ("ollama_prompt_tokens_total", "ollama_generated_tokens_total", "ollama_loaded_model_size_bytes", "ollama_loaded_model_vram_bytes")


def test_scraping_ollamas_own_metrics_beside_the_proxy_changes_no_card_or_table(tmp_path):
    with (
        fake_ollama(token_delay=0.005, load_delay=0.1) as fake,
        otel_proxy(fake.url) as proxy,
        hw_collector(fake.url, "--interval", "1", "--sysfs-root", str(tmp_path)) as collector,
    ):
        configure_fake(fake, native_metrics=True)
        ours = {"otel-proxy": [f"127.0.0.1:{proxy.port}"], "hw-collector": [f"127.0.0.1:{collector.port}"]}
        with prometheus({**ours, "ollama": [f"127.0.0.1:{fake.port}"]}) as both, prometheus(ours) as alone:
            native = httpx.get(fake.url + "/metrics").text
            assert all(f"# TYPE {name}" in native for name in COLLIDING)
            stop = threading.Event()

            def traffic() -> None:
                while not stop.is_set():
                    httpx.post(proxy.url + "/api/generate", json={"model": "qwen2.5:7b", "prompt": "hi", "stream": False, "options": {"num_predict": 20}}, timeout=30)

            worker = threading.Thread(target=traffic)
            worker.start()
            time.sleep(12)
            at = time.time() - 2  # both have scraped up to here
            f = Filters()
            asked = {
                "Tokens/s": queries.tokens_per_second(f, "10s"),
                **{f"{column} {model}": f"{promql}" for model in ("qwen2.5:7b",) for column, promql in queries.loaded_models(Filters(model=model)).items()},
                "per-model tokens/s": queries.per_model(Filters(model="qwen2.5:7b"), "10s")["tokens_per_second"],
            }
            read = {name: (Prometheus(both.url).scalar(promql, at), Prometheus(alone.url).scalar(promql, at)) for name, promql in asked.items()}
            unselected = (Prometheus(both.url).scalar("sum(rate(ollama_generated_tokens_total[10s]))", at),
                          Prometheus(alone.url).scalar("sum(rate(ollama_generated_tokens_total[10s]))", at))
            stop.set()
            worker.join()
    # The stand-in is scraped: a query that does not select the job counts every token twice.
    assert unselected[0] == pytest.approx(2 * unselected[1], rel=0.2), unselected
    for name, (with_native, without) in read.items():
        assert without is not None and without > 0, (name, read)
        assert with_native == pytest.approx(without, rel=0.1), (name, read)
    assert read["size_bytes qwen2.5:7b"][0] == 6_010_000_000 and read["vram_bytes qwen2.5:7b"][0] == 4_500_000_000
