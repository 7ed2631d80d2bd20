"""`compose up`, run for real: compose.yaml's containers built and started by Podman, traffic through them,
exact numbers in the containerised Prometheus and on the containerised dashboard, then nothing left behind."""

from __future__ import annotations

import time

import httpx

from tests.support.harness import ROOT, require_tool
from tests.support.podman_stack import leftovers, podman_stack
from ui import format as fmt

PROXY, OLLAMA, PROMETHEUS, UI, OTLP = "http://127.0.0.1:8001", "http://127.0.0.1:11434", "http://127.0.0.1:9090", "http://127.0.0.1:3001", "http://127.0.0.1:4318"


def query(promql: str) -> float | None:
    result = httpx.get(PROMETHEUS + "/api/v1/query", params={"query": promql}, timeout=10).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(1)


def tokens_card() -> str:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_tool("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1600})
            tab.goto(UI, wait_until="domcontentloaded")
            tab.wait_for_function("document.querySelectorAll('[data-testid=\"stMetric\"]').length >= 10", timeout=60_000)
            tab.wait_for_timeout(2000)
            labels = tab.locator('[data-testid="stMetricLabel"]').all_inner_texts()
            values = tab.locator('[data-testid="stMetricValue"]').all_inner_texts()
            (ROOT / "artifacts").mkdir(exist_ok=True)
            tab.screenshot(path=str(ROOT / "artifacts" / "dashboard-compose.png"), full_page=True)
        finally:
            browser.close()
    return dict(zip((label.strip() for label in labels), (value.strip() for value in values)))["Tokens/s"]


def test_compose_up_serves_traffic_and_every_number_lands_where_it_should():
    with podman_stack() as env:
        started = time.monotonic()
        sent = 0
        with httpx.Client(timeout=60) as client:
            while time.monotonic() - started < 20:  # traffic across several of Prometheus' 5 s scrapes
                stream = sent % 2 == 0
                answer = client.post(PROXY + "/api/generate", json={"model": "llama3.2:1b", "prompt": "why is the sky blue", "stream": stream,
                                                                   "options": {"num_predict": 12}})
                assert answer.status_code == 200, answer.text
                sent += 1
                time.sleep(0.3)
            direct = 3  # straight to Ollama: the proxy misses them, Ollama's log (compose.yaml's copy, read by hw-collector) does not
            for _ in range(direct):
                assert client.post(OLLAMA + "/api/generate", json={"model": "llama3.2:1b", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}).status_code == 200
            truth = client.get(OLLAMA + "/fake/stats").json()
            card = tokens_card()
        wait_for(lambda: {t["labels"]["job"]: t["health"] for t in httpx.get(PROMETHEUS + "/api/v1/targets").json()["data"]["activeTargets"]}
                 == {"otel-proxy": "up", "hw-collector": "up"}, 60, "both jobs up in Prometheus")
        time.sleep(6)  # one more scrape after the last request
        assert query('sum(http_server_request_duration_seconds_count{http_route="/api/generate"})') == sent == truth["requests"]["/api/generate"] - direct
        assert query("sum(ollama_generated_tokens_total)") == truth["generated_tokens"] - 2 * direct == 12 * sent
        assert query('hw_collector_source_up{source="ollama_log"}') == 1
        assert query('sum(ollama_server_requests_total{route="/api/generate", status="200", origin=""})') == sent + direct
        assert query('sum(ollama_log_lines_total{parsed="false"})') == 0
        assert httpx.get(UI + "/_stcore/health").text == "ok"
        managers = httpx.get(PROMETHEUS + "/api/v1/alertmanagers").json()["data"]["activeAlertmanagers"]
        assert [m["url"] for m in managers] == ["http://alertmanager:9093/api/v2/alerts"], managers  # the alerts that fire go there
        assert httpx.get("http://127.0.0.1:9093/-/ready").status_code == 200
        flags = httpx.get(PROMETHEUS + "/api/v1/status/flags").json()["data"]  # compose.yaml's history: 90 days, 10 GB at most
        assert (flags["storage.tsdb.retention.time"], flags["storage.tsdb.retention.size"]) == ("90d", "10GiB"), flags  # 10GB in its units: powers of 2
        assert card != fmt.NO_DATA and card.endswith("tok/s") and float(card.split()[0].replace(",", "")) > 0, card
        received = httpx.get(OTLP + "/sink/received").json()["spans"]
        assert {"otel-proxy"} <= {span["service"] for span in received}
        assert "text_completion llama3.2:1b" in {span["name"] for span in received if span["service"] == "otel-proxy"}
    assert leftovers(env) == {}
