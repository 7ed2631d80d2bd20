"""The Grafana dashboard: generated from the page's PromQL, importable, and its queries answer from a real Prometheus."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import openai
import pytest

from ollama_otel_stack.loadgen.traffic import Plan, run
from tests.harness import ROOT, monitored_ollama
from ui import grafana, queries
from ui.queries import Filters, Prometheus

DASHBOARD = ROOT / "grafana" / "ollama-monitoring.json"
QUESTIONS = ("Requests/s", "Latency by endpoint", "Time to first token p95", "Tokens/s", "Success rate", "GPU", "Power", "Temperature",
             "Memory used", "Loaded models", "Cold loads and reloads", "Share of generation time by client")


def substituted(expr: str) -> str:
    """A panel's query as Grafana sends it with every picker on All."""
    for name, value in (("$instance", ".*"), ("$model", ".*"), ("$client", ".*"), ("$__rate_interval", "1m"), ("$__range", "5m")):
        expr = expr.replace(name, value)
    return expr


def test_the_committed_dashboard_is_the_generated_one_and_importable():
    assert DASHBOARD.read_text() == grafana.render(), "run: python -m ui.grafana > grafana/ollama-monitoring.json"
    board = json.loads(DASHBOARD.read_text())
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "instance", "model", "client"}
    titles = {panel["title"] for panel in board["panels"]}
    assert set(QUESTIONS) <= titles, set(QUESTIONS) - titles
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert not re.search(r'\$(?!instance|model|client|__rate_interval|__range)', target["expr"]), target["expr"]
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with monitored_ollama(tmp_path_factory.mktemp("sysfs")) as (fake, proxy, _, prom):
        yield fake, proxy, prom


def test_every_panel_answers_during_traffic_and_the_gpu_says_no_data(fleet):
    fake, proxy, prom = fleet
    oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
    httpx.post(proxy.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": "warm", "stream": False}, timeout=30)  # a cold load
    oai.chat.completions.create(model="llama3.2:1b", messages=[{"role": "user", "content": "warm"}])
    time.sleep(2.5)
    asyncio.run(run(Plan(url=proxy.url, model="llama3.2:1b", concurrency=2, duration_s=6, max_tokens=8)))
    for _ in range(3):
        oai.chat.completions.create(model="llama3.2:1b", messages=[{"role": "user", "content": "hello"}])
    time.sleep(2.5)
    client, board = Prometheus(prom.url), grafana.dashboard()
    empty = []
    for panel in board["panels"]:  # a panel answers when any of its queries does (no reload here: reloads say no data)
        if not any(client.vector(substituted(target["expr"])) for target in panel["targets"]):
            empty.append(panel["title"])
    # This host has no GPU, no power sensor and no temperature sensor that the collector reads: "no data", never 0.
    hardware = {"GPU", "GPU utilisation", "Power", "Power draw", "Temperature"}
    assert set(empty) <= hardware and {"GPU", "GPU utilisation"} <= set(empty), empty
    # The same numbers as the Streamlit cards, at the same instant.
    at = time.time()
    by_title = {panel["title"]: panel["targets"][0]["expr"] for panel in board["panels"]}
    for title, card in (("Requests/s", queries.request_rate(Filters(), "1m")), ("Tokens/s", queries.tokens_per_second(Filters(), "1m")),
                        ("Success rate", queries.success_rate(Filters(), "1m")), ("Memory used", queries.memory_used_bytes(Filters()))):
        assert client.scalar(substituted(by_title[title]), at) == pytest.approx(client.scalar(card, at)), title
    assert client.scalar(queries.gpu_utilization(Filters())) is None
