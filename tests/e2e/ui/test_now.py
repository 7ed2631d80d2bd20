"""The page's "Now": three requests in different phases, from real processes: the fake writing its log, the collector
following it, the proxy listing what it passes on, Prometheus naming both; joined (ui/now.py) and drawn in headless
Chromium. With OLLAMA_OTEL_SCREENSHOTS set, the screenshot is kept there (artifacts/now.png)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.browser import dashboard_tab
from tests.support.harness import Server, configure_fake, fake_ollama, hw_collector, otel_proxy, prometheus, until
from ui import now
from ui.queries import Filters, Prometheus


CONTEXT = {"num_ctx": 65536}  # one runner for all: a request with other options would reload it


def post(url: str, **options: object) -> None:
    """A request left in flight: the servers' close at the test's end cuts it."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url, **options)


@dataclass
class Busy:
    fake: Server
    proxy: Server
    collector: Server
    prom: Server


@pytest.fixture
def busy(tmp_path) -> Iterator[Busy]:
    """Three requests in flight: claude-code's 40,000-token prompt being read (through the proxy), a script's long
    answer being generated (straight to Ollama), and codex's request waiting for its model to load (through the proxy)."""
    log = tmp_path / "server.log"
    with (
        fake_ollama(load_delay=0.2, log=log) as fake,
        otel_proxy(fake.url) as proxy,
        hw_collector(fake.url, "--interval", "0.5", "--ollama-log", str(log), "--sysfs-root", str(tmp_path)) as collector,
        prometheus({"otel-proxy": [f"127.0.0.1:{proxy.port}"], "hw-collector": [f"127.0.0.1:{collector.port}"]}, scrape_interval="500ms") as prom,
    ):
        configure_fake(fake, parallel=4)
        httpx.post(fake.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": "warm", "stream": False, "options": CONTEXT}, timeout=60).raise_for_status()
        configure_fake(fake, prompt_token_ms=2.0, load_delay=120.0, token_delay=1.0)  # ~80 s to read the prompt; a token a second
        sent = [
            threading.Thread(target=post, args=(proxy.url + "/api/generate",), daemon=True, kwargs={
                "json": {"model": "llama3.2:1b", "prompt": "word " * 40_000, "stream": False, "options": CONTEXT},
                "headers": {"X-Client-Name": "claude-code"}, "timeout": 300}),
            threading.Thread(target=post, args=(fake.url + "/api/generate",), daemon=True, kwargs={
                "json": {"model": "llama3.2:1b", "prompt": "a story", "stream": False, "options": {**CONTEXT, "num_predict": 200}}, "timeout": 300}),
            threading.Thread(target=post, args=(proxy.url + "/api/chat",), daemon=True, kwargs={
                "json": {"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "hi"}], "stream": False}, "headers": {"X-Client-Name": "codex"}, "timeout": 300}),
        ]
        slots = lambda: len(httpx.get(collector.url + "/-/live").json()["requests"])  # noqa: E731
        for taken, thread in enumerate(sent):  # in this order: each one's slot taken before the next is sent
            thread.start()
            if taken < 2:
                until(lambda: slots() > taken)
        yield Busy(fake, proxy, collector, prom)
        configure_fake(fake, unload=True)


def test_now_joins_each_slot_with_the_request_the_proxy_passed_on(busy: Busy):
    prom = Prometheus(busy.prom.url)
    hosts = until(lambda: (found := now.hosts(prom, Filters(), "", "")) and "" not in found and found)
    (collector, proxy), = hosts.values()
    assert (collector, proxy) == (busy.collector.url, busy.proxy.url)

    def three() -> list[now.Row]:
        rows = now.rows(*now.read(collector, proxy))
        return rows if {row.phase for row in rows} == {now.READING, now.GENERATING, now.WAITING} and all(r.eta_s for r in rows if r.phase == now.READING) else []

    rows = until(three, deadline_s=60)
    assert [(row.client, row.model, row.route, row.phase) for row in rows] == [
        ("claude-code", "llama3.2:1b", "/api/generate", now.READING),
        (None, "llama3.2:1b", None, now.GENERATING),  # straight to Ollama, not through the proxy: its model the runner's with its context
        ("codex", "qwen2.5:7b", "/api/chat", now.WAITING)]
    reading = rows[0]
    assert reading.prompt_tokens >= 40_000 and 0 < reading.progress < 1 and reading.cached_tokens == 0
    assert reading.eta_s == pytest.approx((reading.prompt_tokens - reading.read_tokens) / reading.tokens_per_second)


def test_the_page_shows_now_with_the_three_phases_in_headless_chromium(busy: Busy, tmp_path):
    env = {"PROMETHEUS_URL": busy.prom.url, "PROXY_URL": busy.proxy.url, "COLLECTOR_URL": busy.collector.url, "OLLAMA_URL": busy.fake.url, "STATUS_TIMEOUT": "1"}
    with dashboard_tab(env, height=1200) as tab:
        phases = ("reading the prompt", "generating", "waiting")
        shown = [*phases, "prompt tokens", "left"]  # the prompt's bar, once two batches give its rate
        tab.wait_for_function("shown => shown.every(p => document.body.innerText.includes(p))", arg=shown, timeout=90_000)
        text = tab.locator("body").inner_text()
        shot = Path(os.environ.get("OLLAMA_OTEL_SCREENSHOTS") or tmp_path) / "now.png"
        tab.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1400, "height": 700})
    assert "Now" in text and all(phase in text for phase in phases)
    assert "claude-code" in text and "codex" in text and "not through the proxy" in text and "prompt tokens" in text, text[:3000]
    assert shot.stat().st_size > 10_000
