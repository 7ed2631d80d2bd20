"""The proxy's own time on a request: measured, listed, counted, and on request in a Server-Timing header."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.harness import otel_proxy, scrape

CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}]}
SERVER_TIMING = re.compile(r'^otel-proxy;dur=(\d+\.\d{3});desc="added by the proxy"$')


def test_the_added_time_is_in_the_header_the_listing_and_the_histogram(fake):
    with otel_proxy(fake.url, "--server-timing", "1") as proxy:
        timings = []
        with httpx.Client(timeout=30) as client:
            for stream in (True, False):
                with client.stream("POST", proxy.url + "/api/chat", json={**CHAT, "stream": stream}) as answer:
                    header = SERVER_TIMING.match(answer.headers["server-timing"])
                    assert header, answer.headers["server-timing"]
                    answer.read()
                timings.append(float(header.group(1)))
        missing = httpx.post(proxy.url + "/api/chat", json={**CHAT, "model": "no-such-model:1b"}, timeout=30)
        assert missing.status_code == 404 and "server-timing" in missing.headers  # Ollama answered: the proxy held it too
        entries = httpx.get(proxy.url + "/-/requests").json()["requests"]
        page = scrape(proxy.url)
    listed = [entry["proxy_added_s"] for entry in reversed(entries)]
    assert len(listed) == 3 and all(0 < seconds < entry["duration_s"] for seconds, entry in zip(listed, reversed(entries)))
    assert [round(seconds * 1000, 3) for seconds in listed[:2]] == pytest.approx(timings, abs=0.0011)
    assert page.value("otel_proxy_added_duration_seconds_count") == 3
    assert page.value("otel_proxy_added_duration_seconds_sum") == pytest.approx(sum(listed))
    assert page.series("otel_proxy_added_duration_seconds_count") == [{}]  # no labels: one series set for the process


def test_without_the_flag_the_answer_head_is_ollama_s(fake, proxy):
    direct = httpx.post(fake.url + "/api/chat", json={**CHAT, "stream": False}, timeout=30)
    proxied = httpx.post(proxy.url + "/api/chat", json={**CHAT, "stream": False}, timeout=30)
    assert "server-timing" not in proxied.headers
    assert sorted(k for k in proxied.headers if k != "date") == sorted(k for k in direct.headers if k != "date")
    entries = httpx.get(proxy.url + "/-/requests").json()["requests"]
    assert entries[0]["proxy_added_s"] > 0 and scrape(proxy.url).value("otel_proxy_added_duration_seconds_count") == 1


def test_a_request_ollama_never_answered_has_no_added_time(fake):
    with otel_proxy("http://127.0.0.1:9") as proxy:  # nothing listens there
        assert httpx.post(proxy.url + "/api/chat", json=CHAT, timeout=30).status_code == 502
        entry = httpx.get(proxy.url + "/-/requests").json()["requests"][0]
        assert entry["proxy_added_s"] is None and scrape(proxy.url).value("otel_proxy_added_duration_seconds_count") == 0
