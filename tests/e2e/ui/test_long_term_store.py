"""A store beyond one Prometheus (docs/fleet.md): Prometheus remote-writes every sample to a real VictoriaMetrics
(Debian's victoria-metrics), and the dashboard pointed at the store must read what it reads pointed at Prometheus.

- Live: traffic through the proxy, scraped by Prometheus and written on to the store; each card of the page
  (ui/cards.py) evaluated at one instant on both.
- History: remote write carries only what Prometheus scrapes from now on; a store is given the past with its own
  tool (``vmctl prometheus``, from Prometheus' blocks): tests/e2e/ui/test_usage.py copies its backfilled month that way
  and finds the same usage tables, equal to the generator's truth, and the same page."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.harness import fake_ollama, hw_collector, otel_proxy, prometheus, victoria_metrics
from ui.cards import CARDS
from ui.queries import Filters, Prometheus

WINDOW, WINDOW_S = "10s", 10  # the cards' rates, here over 10 s (the page's UI_CARD_WINDOW) so the series outlive a window
# Where the two query engines differ by design: MetricsQL's rate() takes the last sample before the window as its
# base and divides by the time its samples span, where Prometheus extrapolates to the window's edges. On series
# older than the window the two agree to a few per cent; on a series born inside it MetricsQL counts from zero over
# the series' life, Prometheus over the whole window (4.7 times apart in this test's first run: docs/fleet.md).
RATE_CARDS = {"Requests/s", "Tokens/s", "Avg latency", "Success rate", "TTFT p95"}
RATE_TOLERANCE = 0.05  # seen: under 1 %


def drive(proxy_url: str, seconds: float) -> int:
    """Steady traffic: streamed and whole answers on two APIs, and a 404 now and then."""
    sent = 0
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            client.post(proxy_url + "/api/generate", json={"model": "llama3.2:1b", "prompt": "hi", "options": {"num_predict": 6}}).raise_for_status()
            client.post(proxy_url + "/v1/chat/completions", json={"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}],
                                                                 "stream": True, "max_tokens": 4}).raise_for_status()
            if sent % 5 == 0:
                client.post(proxy_url + "/api/generate", json={"model": "no-such-model", "prompt": "hi"})
            sent += 1
            time.sleep(0.05)
    return sent


def test_the_cards_read_the_same_from_the_store_prometheus_writes_to(tmp_path):
    with (
        victoria_metrics() as store,
        fake_ollama() as fake,
        otel_proxy(fake.url) as proxy,
        hw_collector(fake.url, "--interval", "1", "--sysfs-root", str(tmp_path)) as collector,
        prometheus({"otel-proxy": [f"127.0.0.1:{proxy.port}"], "hw-collector": [f"127.0.0.1:{collector.port}"]},
                   remote_write=[store.url + "/api/v1/write"]) as prom,
    ):
        assert drive(proxy.url, WINDOW_S + 14) > 20  # every series is born in the first second, then ages past the window
        at = time.time() - 6  # the traffic still flowing then; remote write sends in batches, seconds apart
        here, there = Prometheus(prom.url), Prometheus(store.url)
        newest = "timestamp(up)"  # each target's last scrape by then: the store has caught up when they match
        deadline = time.monotonic() + 60
        while sorted(v for _, v in there.vector(newest, at)) != sorted(v for _, v in here.vector(newest, at)):  # remote write sends in batches
            assert time.monotonic() < deadline, (here.vector(newest, at), there.vector(newest, at))
            time.sleep(0.5)
        assert here.scalar("sum(http_server_request_duration_seconds_count)", at) > 40
        for card in CARDS:
            query = card.query(Filters(), WINDOW)
            mine, stored = here.scalar(query, at), there.scalar(query, at)
            print(f"{card.label}: Prometheus {mine}, VictoriaMetrics {stored}")
            if card.label in ("GPU", "Power", "Temperature"):  # no such source on this machine: no data on either, never 0
                assert mine is None and stored is None, (card.label, mine, stored)
            elif card.label in RATE_CARDS:
                assert mine is not None and mine > 0 and stored == pytest.approx(mine, rel=RATE_TOLERANCE), (card.label, query, mine, stored)
            else:
                assert mine is not None and stored == pytest.approx(mine), (card.label, query, mine, stored)
        # the series themselves, counters and gauges alike: the same values at the same instant
        for series in ("sum(ollama_generated_tokens_total)", "sum(gen_ai_server_request_duration_seconds_count)", "sum(system_memory_usage_bytes)"):
            assert there.scalar(series, at) == here.scalar(series, at) != None, series  # noqa: E711 - None is no data
