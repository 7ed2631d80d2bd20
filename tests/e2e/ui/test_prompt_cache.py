"""The prompt cache on the page (headless Chromium), from a real Prometheus: the advice that names the cause of a lost
cache, the cache hits and what the prompt tokens were; and, with an Ollama that does not report its cache, that it
does not.

Three agent conversations on /v1/messages share one model on Ollama's one slot; another client reloads the model with
another num_ctx midway, so that each conversation's next turn reads its prompt again (tests/e2e/proxy/test_prompt_cache.py
holds each turn to the fake's truth).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.proxy.test_prompt_cache import QUESTIONS, answered, first_message, request
from tests.support.browser import dashboard_tab
from tests.support.harness import Server, configure_fake, fake_ollama, hw_collector, otel_proxy, prometheus
from ui.queries import Filters, Prometheus
from ui.status import advise, read_snapshot, recent_requests

MODEL, ROUTE = "llama3.2:1b", "/v1/messages"


def conversations(proxy: Server, turns: int, reload_before: int | None) -> None:
    histories = {name: [first_message(ROUTE, question)] for name, question in QUESTIONS.items()}
    with httpx.Client(base_url=proxy.url, timeout=60) as client:
        for turn in range(1, turns + 1):
            if turn == reload_before:
                client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_ctx": 8192}}).raise_for_status()
            for history in histories.values():
                answer = client.post(ROUTE, json=request(ROUTE, history, False))
                assert answer.status_code == 200, answer.text
                history += answered(ROUTE, answer.json())


@pytest.fixture
def stack(request, tmp_path) -> Iterator[tuple[Server, Server, Server]]:
    with (
        fake_ollama(token_delay=0.002, load_delay=0.3, version=request.param) as fake,
        otel_proxy(fake.url, "--ps-interval", "0.5") as proxy,
        hw_collector(fake.url, "--interval", "1", "--sysfs-root", str(tmp_path)) as collector,
        prometheus({"otel-proxy": [f"127.0.0.1:{proxy.port}"], "hw-collector": [f"127.0.0.1:{collector.port}"]}) as prom,
    ):
        configure_fake(fake, parallel=1)
        yield fake, proxy, prom


def scraped(prom: Server, promql: str, wanted: float) -> None:
    """Wait until Prometheus has scraped what the proxy counted."""
    client = Prometheus(prom.url)
    deadline = time.monotonic() + 30
    while (client.scalar(promql) or 0) < wanted:
        assert time.monotonic() < deadline, promql
        time.sleep(0.2)  # the next scrape (every second)


@pytest.mark.parametrize("stack", ["0.33.3"], indirect=True)
def test_the_page_names_a_reload_that_dropped_every_conversations_cache(stack):
    fake, proxy, prom = stack
    conversations(proxy, turns=4, reload_before=3)
    scraped(prom, 'sum(ollama_prompt_cache_misses_total{ollama_cache_cause="reload"})', 3)
    scraped(prom, "sum(ollama_prompt_new_tokens_total)", 1)
    expected = advise(read_snapshot(Prometheus(prom.url), Filters(), window="1m", recent=recent_requests(proxy.url)))
    reload_advice = [line for line in expected if "dropped every conversation's prompt cache" in line]
    assert len(reload_advice) == 1 and reload_advice[0].startswith(f"{MODEL} was reloaded "), expected
    assert reload_advice[0].endswith("tokens read again): give every client the same num_ctx")
    env = {"PROMETHEUS_URL": prom.url, "PROXY_URL": proxy.url, "OLLAMA_URL": fake.url, "STATUS_TIMEOUT": "2"}
    with dashboard_tab(env) as tab:
        tab.get_by_text("dropped every conversation's prompt cache").first.wait_for(timeout=60_000)
        tab.get_by_text("read from the cache").first.wait_for(timeout=60_000)
        warnings = tab.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()
        caption = tab.get_by_text("read from the cache").first.inner_text()
    shown = [text.strip() for text in warnings if "prompt cache" in text]
    assert [re.sub(r"\d+", "#", text) for text in shown] == [re.sub(r"\d+", "#", reload_advice[0])], shown
    assert re.fullmatch(r"Prompt tokens: \d+ % read from the cache \(\d+\), \d+ evaluated anew, of which \d+ read again after the cache was lost\.", caption.strip()), caption


@pytest.mark.parametrize("stack", ["0.32.15"], indirect=True)
def test_the_page_says_an_ollama_that_does_not_report_its_cache_does_not(stack):
    fake, proxy, prom = stack
    conversations(proxy, turns=2, reload_before=None)
    scraped(prom, "sum(ollama_prompt_tokens_total)", 1)
    scraped(prom, 'count(ollama_up{ollama_version="0.32.15"})', 1)
    env = {"PROMETHEUS_URL": prom.url, "PROXY_URL": proxy.url, "OLLAMA_URL": fake.url, "STATUS_TIMEOUT": "2"}
    with dashboard_tab(env) as tab:
        said = tab.get_by_text("does not report its prompt cache")
        said.first.wait_for(timeout=60_000)
        caption = said.first.inner_text()
    assert caption.strip() == "Ollama 0.32.15 does not report its prompt cache (0.33.3 and later do): no cache-hit share or prompt rate on new tokens."
