"""The advice names why requests are slow and what to change, read from a real Prometheus, and the
page shows it under the status line (headless Chromium).

One run against the fake's scheduler (one slot per model, 0.4 s loads), with the proxy and the
hardware collector scraped by Prometheus; each model is made to show one of the five kinds:
slot-bound, load-queue-bound, reload-bound, context-bound (prompts cut to fit) and partial offload.
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.harness import (PYTHON, ROOT, Server, configure_fake, fake_ollama, fake_stats, free_port, hw_collector, otel_proxy, prometheus,
                                   require_tool, run_server, scraped, until)
from ui.queries import Filters, Prometheus
from ui.status import advise, assess, read_snapshot, recent_requests, rules_sentence

QUEUED, RELOADED, FULL, OFFLOADED = "llama3.2:1b", "llama3.2:3b", "phi3:mini", "qwen2.5:7b"  # qwen2.5:7b: 4.5 of 6.01 GB in VRAM
BLOCKER, HELD = "mistral:7b", "gemma3:4b"
BLOCKER_LOAD_S = 6.0
LOAD_S = 0.4


def generate(url: str, model: str, num_ctx: int | None = None, prompt: str = "why is the sky blue", tokens: int = 20) -> None:
    options: dict = {"num_predict": tokens}
    if num_ctx:
        options["num_ctx"] = num_ctx
    assert httpx.post(url + "/api/generate", json={"model": model, "prompt": prompt, "stream": False, "options": options}, timeout=60).status_code == 200


def duration(text: str) -> float:
    """Seconds from ui.format.seconds's "660 ms" or "5.3 s"."""
    value, unit = text.split()
    return float(value) / (1000 if unit == "ms" else 1)


def numbers_hidden(texts: list[str]) -> list[str]:
    """The sentences with their figures masked: the page reads Prometheus a moment later than the test."""
    return sorted(re.sub(r"[0-9][0-9.]*", "#", text) for text in texts)


class Run:
    def __init__(self, fake: Server, proxy: Server, prom: Server) -> None:
        self.fake, self.proxy, self.prom = fake, proxy, prom


@pytest.fixture(scope="module")
def slow(tmp_path_factory) -> Iterator[Run]:
    with (
        fake_ollama(token_delay=0.01, load_delay=LOAD_S) as fake,
        otel_proxy(fake.url, "--ps-interval", "0.2") as proxy,
        hw_collector(fake.url, "--interval", "1", "--sysfs-root", str(tmp_path_factory.mktemp("sysfs"))) as collector,
        prometheus({"otel-proxy": [f"127.0.0.1:{proxy.port}"], "hw-collector": [f"127.0.0.1:{collector.port}"]}) as prom,
    ):
        configure_fake(fake, parallel=1, add_models={BLOCKER: {"size": 4_400_000_000, "size_vram": 4_400_000_000, "family": "llama"},
                                                     HELD: {"size": 3_300_000_000, "size_vram": 3_300_000_000, "family": "gemma3"}})
        # load-queue-bound: a slow cold load of one model, and another model's request right behind it in
        # Ollama's pending queue (one load at a time for all models), whose own load is quick. Its series is
        # born with this wait, which the page counts (ui/queries.py grown).
        configure_fake(fake, load_delay=BLOCKER_LOAD_S)
        blocker = threading.Thread(target=generate, args=(proxy.url, BLOCKER), kwargs={"tokens": 2})
        blocker.start()
        until(lambda: fake_stats(fake)["loading"] == BLOCKER, every_s=0.01)
        configure_fake(fake, load_delay=LOAD_S)  # read when a load starts: the blocker's is under way
        generate(proxy.url, HELD, tokens=2)
        blocker.join()
        for model in (QUEUED, RELOADED, OFFLOADED):  # every series exists before the runs, so rates see them grow
            generate(proxy.url, model, tokens=2)
        generate(proxy.url, FULL, num_ctx=64, tokens=2)
        generate(proxy.url, RELOADED, num_ctx=8192, tokens=2)
        scraped(prom.url, 2)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:  # slot-bound: 8 at once on one slot, twice
            for _ in range(2):
                list(pool.map(lambda _: generate(proxy.url, QUEUED), range(8)))
                time.sleep(1.2)
        for num_ctx in (4096, 8192, 4096, 8192):  # reload-bound: a client switching num_ctx
            generate(proxy.url, RELOADED, num_ctx=num_ctx, tokens=2)
            time.sleep(0.3)
        for _ in range(4):  # context-bound: prompts longer than the context
            generate(proxy.url, FULL, num_ctx=64, prompt=" ".join(["word"] * 300), tokens=8)
            time.sleep(0.3)
        scraped(prom.url, 2)
        yield Run(fake, proxy, prom)


def test_the_advice_names_the_cause_of_each_kind_of_slowness(slow: Run):
    client, recent = Prometheus(slow.prom.url), recent_requests(slow.proxy.url)
    advice = {model: advise(read_snapshot(client, Filters(model=model), window="1m", recent=recent)) for model in (QUEUED, RELOADED, FULL, OFFLOADED, HELD, BLOCKER)}
    everything = read_snapshot(client, Filters(), window="1m", recent=recent)
    truth = httpx.get(slow.fake.url + "/fake/schedule").json()
    slot_truth = [entry["slot_s"] for entry in truth if entry["model"] == QUEUED]
    (held_truth,) = [entry for entry in truth if entry["model"] == HELD]
    assert held_truth["behind"] == [f"{BLOCKER} (cold)"] and held_truth["pending_s"] > 5.0

    (slot,) = advice[QUEUED]
    mean_wait = duration(slot.split(" requests wait ")[1].split(" on average")[0])
    assert slot.startswith(f"{QUEUED} requests wait ") and slot.endswith("in flight): raise OLLAMA_NUM_PARALLEL or add a host")
    assert mean_wait == pytest.approx(sum(slot_truth) / len(slot_truth), abs=0.1), (slot, slot_truth)
    (held,) = advice[HELD]
    waited = duration(held.split(f"hold up {HELD} (")[1].split(" of waiting")[0])
    assert held == f"loads of {BLOCKER} hold up {HELD} ({held.split('(')[1].split(')')[0]}): keep {BLOCKER} loaded (OLLAMA_KEEP_ALIVE, OLLAMA_MAX_LOADED_MODELS) or give it its own host"
    assert waited == pytest.approx(held_truth["pending_s"], rel=0.1)  # increase() extrapolates to the window's edges: a few %
    (reloads,) = advice[RELOADED]
    assert reloads.endswith(f"reloads of {RELOADED} in 10 min: clients switch num_ctx between 4096 and 8192; pin one value") and int(reloads.split()[0]) >= 3
    # Ollama cuts a prompt too long for the context to half of it (llm/llama_server.go), so a cut one fills only part of
    # it: the prompts that were cut are counted (ollama_context_full_total), 4 of the 5 in the window
    (full,) = advice[FULL]
    assert re.fullmatch(rf"\d+ % of {re.escape(FULL)}'s prompts were cut to fit its 64-token context: raise num_ctx", full), full
    assert int(full.split()[0]) >= 50
    share = 1 - 4_500_000_000 / 6_010_000_000  # the fake's /api/ps size_vram and size for it
    assert advice[OFFLOADED] == [f"{OFFLOADED} runs {round(share * 100)} % on the CPU: a smaller quantisation or num_ctx would fit VRAM"]
    assert advice[BLOCKER] == []
    every = [*advice[QUEUED], *advice[HELD], *advice[RELOADED], *advice[FULL], *advice[OFFLOADED]]
    assert numbers_hidden(advise(everything)) == numbers_hidden(every)
    assert rules_sentence(everything, assess(everything)) == advise(everything)[0]


def test_the_page_shows_every_advice_under_the_status_line_in_headless_chromium(slow: Run):
    from playwright.sync_api import sync_playwright

    expected = advise(read_snapshot(Prometheus(slow.prom.url), Filters(), recent=recent_requests(slow.proxy.url)))
    assert len(expected) == 5, expected
    chromium = require_tool("chromium")
    port = free_port()
    page = str(ROOT / "ui" / "streamlit_app.py")
    command = [PYTHON, "-m", "streamlit", "run", page, "--server.port", str(port), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1"]
    env = {"PROMETHEUS_URL": slow.prom.url, "PROXY_URL": slow.proxy.url, "OLLAMA_URL": slow.fake.url, "STATUS_TIMEOUT": "5"}
    with run_server(command, port, "/_stcore/health", env=env) as ui:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            try:
                tab = browser.new_page(viewport={"width": 1400, "height": 2600})
                tab.goto(ui.url, wait_until="domcontentloaded")
                tab.wait_for_function("document.querySelectorAll('[data-testid=\"stAlertContentWarning\"]').length >= 5", timeout=60_000)
                # the advice, without the banners of alerts.yml's firing alerts above the status line (🚨)
                shown = [text.strip() for text in tab.locator('[data-testid="stAlertContentWarning"]').all_inner_texts() if not text.strip().startswith("🚨")]
                status = tab.locator('[data-testid="stAlertContentInfo"]').first.inner_text()
                order = tab.evaluate("""() => [...document.querySelectorAll('[data-testid="stAlertContentInfo"], [data-testid="stAlertContentWarning"]')]
                                              .map(node => node.innerText.trim().startsWith('🚨') ? 'alert' : node.getAttribute('data-testid'))""")
            finally:
                browser.close()
    assert status.strip()
    assert numbers_hidden(shown) == numbers_hidden(expected), shown
    alerts = order.count("alert")  # the rules that fire for the same causes (alerts.yml), first
    assert order[:alerts] == ["alert"] * alerts and order[alerts] == "stAlertContentInfo" and order[alerts + 1:alerts + 6] == ["stAlertContentWarning"] * 5, order
