"""The dashboard: AppTest runs of the page against a real Prometheus fed by fake Ollama → proxy,
and headless Chromium (Debian's) driven by Playwright against the page served by Streamlit."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from ollama_otel_stack.loadgen.traffic import Plan, run
from tests.support.harness import PYTHON, ROOT, Server, configure_fake, free_port, monitored_ollama, require_tool, run_server, scraped, until
from tests.support.truth import interpolate, sample_fake_tokens
from ui import format as fmt
from ui.status import STATUS

PAGE = str(ROOT / "ui" / "streamlit_app.py")
ARTIFACTS = ROOT / "artifacts"
STATUS_TEXT = "Llama is running smoothly; memory good, no GPU on this host."


class Site:
    def __init__(self, fake: Server, proxy: Server, prom: Server, log: Path) -> None:
        self.fake, self.proxy, self.prom, self.log = fake, proxy, prom, log

    def env(self) -> dict[str, str]:
        return {"PROMETHEUS_URL": self.prom.url, "PROXY_URL": self.proxy.url, "OLLAMA_URL": self.fake.url, "UI_CARD_WINDOW": "10s"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with monitored_ollama(tmp_path_factory.mktemp("sysfs"), load_delay=0.1, log=log) as (fake, proxy, _, prom):
        configure_fake(fake, answers={"phi3:mini": STATUS_TEXT})
        yield Site(fake, proxy, prom, log)


def page(env: dict[str, str], monkeypatch) -> AppTest:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    STATUS.clear()
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def card(app: AppTest, label: str) -> str:
    return next(metric.value for metric in app.metric if metric.label == label)


def number(text: str) -> float:
    value = float(re.match(r"[\d.,]+", text).group(0).replace(",", ""))
    return value / 1000 if text.endswith(" ms") else value


def test_without_traffic_the_cards_say_no_data_and_why(site: Site, monkeypatch):
    app = page(site.env(), monkeypatch)
    assert card(app, "Tokens/s") == fmt.NO_DATA
    assert card(app, "Avg latency") == fmt.NO_DATA
    assert card(app, "GPU") == fmt.NO_DATA
    captions = [c.value for c in app.caption]
    assert "no tokens generated in the last minute" in captions and "no GPU source on this host" in captions
    assert card(app, "Memory used") != fmt.NO_DATA  # the collector measures memory


def test_after_traffic_tokens_per_second_and_latency_match_the_ground_truth(site: Site, monkeypatch):
    httpx.post(site.proxy.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": "warm", "stream": False}, timeout=30)
    scraped(site.prom.url, 2)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_fake_tokens, args=(site.fake, stop, samples))
    plan = Plan(url=site.proxy.url, model="llama3.2:1b", concurrency=4, duration_s=24, max_tokens=24)
    outcome: dict = {}
    traffic = threading.Thread(target=lambda: outcome.update(asyncio.run(run(plan)).summary()))
    sampler.start()
    traffic.start()
    try:
        time.sleep(16)  # steady traffic for longer than the card window (10 s here)
        asked = time.time()
        app = page(site.env(), monkeypatch)
        time.sleep(1)
    finally:
        traffic.join()
        stop.set()
        sampler.join()
    truth = (interpolate(samples, asked) - interpolate(samples, asked - 10)) / 10
    shown = card(app, "Tokens/s")
    assert number(shown) == pytest.approx(truth, rel=0.15), (shown, truth)
    latency = card(app, "Avg latency")
    assert number(latency) == pytest.approx(outcome["latency_mean_s"], rel=0.2), (latency, outcome["latency_mean_s"])
    assert card(app, "Success rate") == "100 %"
    # The status banner: the model's line, and where it came from.
    assert app.info[0].value == fmt.plain(STATUS_TEXT)
    assert any(c.value.startswith("status by phi3:mini") for c in app.caption)


def test_responses_and_messages_traffic_shows_in_the_endpoint_table_and_the_request_list(site: Site, monkeypatch):
    import anthropic
    import openai

    oai = openai.OpenAI(base_url=site.proxy.url + "/v1", api_key="x", max_retries=0)
    claude = anthropic.Anthropic(base_url=site.proxy.url, api_key="x", max_retries=0)
    for _ in range(8):  # across several scrapes (every second), so the rates see the counts grow
        list(oai.responses.create(model="llama3.2:1b", input="hello there", stream=True))
        claude.messages.create(model="llama3.2:1b", max_tokens=64, messages=[{"role": "user", "content": "hello there"}])
        time.sleep(0.5)
    scraped(site.prom.url)
    app = page(site.env(), monkeypatch)
    frames = [frame.value for frame in app.dataframe]
    endpoints = next(frame for frame in frames if frame.index.name == "endpoint")
    assert {"/v1/responses", "/v1/messages"} <= set(endpoints.index), endpoints
    assert endpoints.loc["/v1/messages", "P95"] != fmt.NO_DATA
    listing = next(frame for frame in frames if "route" in frame.columns)
    newest = listing.iloc[0]
    assert (newest["route"], newest["finish"], newest["tokens in/out"]) == ("/v1/messages", "end_turn", "2 / 8"), newest


def test_a_prompt_ollama_cut_is_marked_in_the_request_list_with_its_length_before_the_cut(site: Site, monkeypatch):
    """The proxy's request (its prompt has the cut's length) joined with Ollama's "truncating input prompt" line, as the
    collector read it (/-/live): found by Prometheus' scrape targets, no URL given."""
    body = {"model": "qwen2.5:7b", "prompt": "word " * 900, "stream": False, "options": {"num_ctx": 512, "num_predict": 2}}
    httpx.post(site.proxy.url + "/api/generate", json=body, timeout=30).raise_for_status()
    line = [text for text in site.log.read_text().splitlines() if '"truncating input prompt"' in text][-1]
    said = dict(pair.split("=") for pair in line.split('"truncating input prompt" ')[1].split(" "))
    collector = next(target["scrapeUrl"] for target in httpx.get(site.prom.url + "/api/v1/targets").json()["data"]["activeTargets"]
                     if target["labels"]["job"] == "hw-collector").removesuffix("/metrics")
    until(lambda: any(cut["new"] == int(said["new"]) for cut in httpx.get(collector + "/-/live").json()["truncations"]))
    import streamlit as st

    st.cache_data.clear()  # the request list an earlier test's page read
    app = page(site.env(), monkeypatch)
    listing = next(frame.value for frame in app.dataframe if "prompt cut" in frame.value.columns)
    newest = listing.iloc[0]
    assert (newest["model"], newest["prompt cut"]) == ("qwen2.5:7b", f"{int(said['prompt']):,} → {int(said['new']):,} tokens"), dict(newest)
    assert set(listing["prompt cut"].iloc[1:]) <= {""}  # the others were not cut


def test_two_tabs_within_30_seconds_make_one_call_to_the_status_model(site: Site, monkeypatch):
    calls = lambda: httpx.get(site.fake.url + "/fake/stats").json()["by_model"].get("phi3:mini", {}).get("requests", 0)  # noqa: E731
    before = calls()
    first = page(site.env(), monkeypatch)  # clears the process-wide cache, then renders
    second = AppTest.from_file(PAGE, default_timeout=60)
    second.run()
    assert first.info[0].value == second.info[0].value == fmt.plain(STATUS_TEXT)
    assert calls() - before == 1


def test_prometheus_down_shows_one_clear_message_and_no_exception(site: Site, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"
    app = page({**site.env(), "PROMETHEUS_URL": closed}, monkeypatch)
    assert [error.value for error in app.error if closed in error.value] == [
        f"Prometheus at {closed} is unreachable: no numbers to show. The page retries every 5 s."]
    assert len(app.metric) == 0  # no card at all rather than cards that look like readings


def test_the_page_in_headless_chromium(site: Site):
    from playwright.sync_api import sync_playwright

    chromium = require_tool("chromium")
    port = free_port()
    command = [PYTHON, "-m", "streamlit", "run", PAGE, "--server.port", str(port), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1"]
    httpx.post(site.proxy.url + "/api/chat", json={"model": "llama3.2:1b", "messages": [], "stream": False}, timeout=30)
    with run_server(command, port, "/_stcore/health", env=site.env()) as ui:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
            )
            try:
                tab = browser.new_page(viewport={"width": 1400, "height": 2600})
                tab.goto(ui.url, wait_until="domcontentloaded")
                tab.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
                tab.wait_for_function("document.querySelectorAll('[data-testid=\"stMetric\"]').length >= 10", timeout=30_000)
                tab.wait_for_timeout(3000)
                labels = tab.locator('[data-testid="stMetricLabel"]').all_inner_texts()
                values = tab.locator('[data-testid="stMetricValue"]').all_inner_texts()
                cards = dict(zip((label.strip() for label in labels), (value.strip() for value in values)))
                ARTIFACTS.mkdir(exist_ok=True)
                tab.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
                body = tab.inner_text("body")
            finally:
                browser.close()
    assert {"Requests/s", "Avg latency", "Tokens/s", "GPU", "Memory used", "Temperature"} <= set(cards)
    assert cards["GPU"] == fmt.NO_DATA and "no GPU source on this host" in body
    assert cards["Memory used"].endswith("%")
    assert STATUS_TEXT in body and "Recent requests" in body
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 50_000


def test_the_clients_table_splits_requests_and_tokens_exactly(site: Site, monkeypatch):
    """Two clients (openai-python, ollama-python) through the proxy: the table's growth equals what each sent."""
    import ollama as ollama_client
    import openai
    import streamlit as st

    def table() -> dict[str, tuple[int, int, int]]:
        st.cache_data.clear()
        app = page(site.env(), monkeypatch)
        frame = next(frame.value for frame in app.dataframe if "client" in frame.value.columns)
        counts = {}
        for _, row in frame.iterrows():
            tokens_in, tokens_out = (int(part.replace(",", "")) for part in row["tokens in / out"].split(" / "))
            counts[row["client"]] = (int(row["requests"].replace(",", "")), tokens_in, tokens_out)
        return counts

    httpx.post(site.proxy.url + "/api/chat", json={"model": "llama3.2:1b", "messages": [], "stream": False}, headers={"user-agent": "ollama-python/0.6.3"})
    oai = openai.OpenAI(base_url=site.proxy.url + "/v1", api_key="x", max_retries=0)
    oai.chat.completions.create(model="llama3.2:1b", messages=[{"role": "user", "content": "warm"}])
    scraped(site.prom.url, 2)  # both series exist before the counted traffic
    before, stats_before = table(), httpx.get(site.fake.url + "/fake/stats").json()["by_route"]
    native = ollama_client.Client(host=site.proxy.url)
    for _ in range(3):
        oai.chat.completions.create(model="llama3.2:1b", messages=[{"role": "user", "content": "hello there"}])
    for _ in range(2):
        native.chat(model="llama3.2:1b", messages=[{"role": "user", "content": "hello there"}])
    scraped(site.prom.url, 2)
    after, stats_after = table(), httpx.get(site.fake.url + "/fake/stats").json()["by_route"]
    for client, route, sent in (("openai-python", "/v1/chat/completions", 3), ("ollama-python", "/api/chat", 2)):
        truth = tuple(stats_after[route][key] - stats_before[route][key] for key in ("requests", "prompt_tokens", "generated_tokens"))
        grown = tuple(a - b for a, b in zip(after[client], before[client]))
        assert grown == truth and truth[0] == sent, (client, grown, truth)


def test_the_models_table_has_one_row_per_model_joined_with_what_is_loaded(site: Site, monkeypatch):
    """People type llama3.2; /api/ps says llama3.2:latest; llama3.2:3b is the same manifest. One row, loaded now."""
    import streamlit as st

    for name in ("llama3.2", "Llama3.2:latest", "llama3.2:3b"):
        httpx.post(site.proxy.url + "/api/generate", json={"model": name, "prompt": "hi", "stream": False, "options": {"num_predict": 2}}, timeout=30).raise_for_status()
    listed = httpx.get(site.fake.url + "/api/ps").json()["models"]
    assert "llama3.2:latest" in [model["name"] for model in listed]  # what Ollama's /api/ps calls it
    scraped(site.prom.url, 3)  # the collector has read /api/ps (every second) and Prometheus has scraped both
    st.cache_data.clear()
    app = page(site.env(), monkeypatch)
    frame = next(frame.value for frame in app.dataframe if "loaded now" in frame.value.columns)
    rows = {row["model"]: row for _, row in frame.iterrows() if str(row["model"]).lower().startswith("llama3.2") and row["model"] != "llama3.2:1b"}
    assert list(rows) == ["llama3.2:3b"], list(rows)
    row = rows["llama3.2:3b"]
    assert row["loaded now"] == "yes" and int(row["requests"]) == 3 and row["in GPU"] == "100 %", dict(row)
    # its runner as Ollama's log gave its command line: the fake's slots (OLLAMA_NUM_PARALLEL) and the context /api/ps lists
    context = next(model["context_length"] for model in listed if model["name"] == "llama3.2:latest")
    assert row["runner (last started)"] == f"64 slots × {context:,} tokens, KV f16, flash attention auto, GPU layers auto", dict(row)
