"""The Grafana dashboard: generated from the page's PromQL, importable, and its queries answer from a real Prometheus."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections import Counter

import httpx
import openai
import pytest

from ollama_otel_stack.loadgen.traffic import Plan, run
from otel_proxy.instruments import TIME_TO_FIRST_TOKEN_BUCKETS
from tests.support.harness import ROOT, monitored_ollama, require_tool, scraped, substituted, until
from tests.support.truth import bucket_around, interpolate, sample_fake_tokens
from ui import grafana, queries
from ui.cards import CARDS
from ui.queries import Filters, Prometheus

DASHBOARD = ROOT / "grafana" / "ollama-monitoring.json"
TYPES = ROOT / "tests" / "support" / "grafana_types"  # @grafana/schema, pinned (package-lock.json); make test runs npm ci there
QUESTIONS = ("Requests/s", "Latency by endpoint", "Time to first token p95", "Tokens/s", "Success rate", "GPU", "Power", "Temperature",
             "Memory used", "Loaded models", "Cold loads and reloads", "Share of generation time by client")


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


def test_the_dashboard_type_checks_against_grafanas_own_types():
    """tsc, strict, with the JSON as a literal of @grafana/schema's Dashboard (12.2.1 and 13.2.3): a missing
    required field, an unknown one or a string outside a union fails. The JSON before this check failed it
    (`current: {}` lacks text and value; `definition` is not a VariableModel field)."""
    node = require_tool("node")
    assert (TYPES / "node_modules" / "typescript").is_dir(), "run `make test` (npm ci in tests/support/grafana_types)"
    checked = subprocess.run([node, str(TYPES / "check.mjs"), str(DASHBOARD)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-2:] == ["grafana-schema-12: 0 error(s)", "grafana-schema-13: 0 error(s)"], checked.stdout


def overlaps(panels: list[dict]) -> list[tuple[str, str]]:
    """Pairs of panels whose stored grid rectangles share a cell (Grafana's grid: 24 columns)."""
    taken: dict[tuple[int, int], str] = {}
    found = []
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        for cell in ((x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])):
            if cell in taken and (taken[cell], panel["title"]) not in found:
                found.append((taken[cell], panel["title"]))
            taken.setdefault(cell, panel["title"])
    return found


def test_no_two_panels_overlap_as_stored_and_the_tables_are_tables():
    board = json.loads(DASHBOARD.read_text())
    assert overlaps(board["panels"]) == []
    # in the page's order: top to bottom, left to right
    assert [(p["gridPos"]["y"], p["gridPos"]["x"]) for p in board["panels"]] == sorted((p["gridPos"]["y"], p["gridPos"]["x"]) for p in board["panels"])
    assert board["schemaVersion"] == 42
    for panel in board["panels"]:
        for target in panel["targets"]:
            assert target["format"] == ("table" if panel["type"] == "table" else "time_series"), panel["title"]
    assert all({"text", "value"} <= set(variable["current"]) for variable in board["templating"]["list"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with monitored_ollama(tmp_path_factory.mktemp("sysfs")) as (fake, proxy, _, prom):
        yield fake, proxy, prom


def test_every_panel_answers_during_traffic_and_the_gpu_says_no_data(fleet):
    fake, proxy, prom = fleet
    oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
    httpx.post(proxy.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": "warm", "stream": False}, timeout=30)  # a cold load
    oai.chat.completions.create(model="llama3.2:1b", messages=[{"role": "user", "content": "warm"}])
    scraped(prom.url)  # the series the warm-up made are stored before the traffic's rates begin
    asyncio.run(run(Plan(url=proxy.url, model="llama3.2:1b", concurrency=2, duration_s=6, max_tokens=8)))
    for _ in range(3):
        oai.chat.completions.create(model="llama3.2:1b", messages=[{"role": "user", "content": "hello"}])
    scraped(prom.url, 2)
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
    scraped(prom.url)  # every sample scraped before `at` is stored: both queries see the same data
    by_title = {panel["title"]: panel["targets"][0]["expr"] for panel in board["panels"]}
    twins = [card for card in CARDS if card.grafana_unit]  # each stat panel is a card's twin (ui/cards.py)
    assert [title for title in by_title if title in {card.grafana_title or card.label for card in twins}] == [card.grafana_title or card.label for card in twins]
    for card in twins:
        expected = client.scalar(card.query(Filters(), "1m"), at)
        assert client.scalar(substituted(by_title[card.grafana_title or card.label]), at) == pytest.approx(expected), card.label
    assert client.scalar(queries.gpu_utilization(Filters())) is None


def test_the_tables_show_what_the_clients_sent_and_the_fake_loaded_in_the_range(fleet):
    """The three tables against truths of their own: requests counted by the clients that sent them, the loads in
    the fake's schedule log, and the VRAM the fake's /api/ps reports. The dashboard's range starts between two rounds
    of traffic, so each count is both ways a table computes it: the growth within the range of a series older than
    it (a client idle in the range shows 0, one busy in both shows its second round only; a model loaded before it,
    no load), and the whole of a series born within it (a new client, a model loaded for the first time)."""
    fake, proxy, prom = fleet
    client, board = Prometheus(prom.url), grafana.dashboard()
    by_title = {panel["title"]: panel["targets"] for panel in board["panels"]}
    sent = Counter()

    def send(name: str, count: int, model: str = "llama3.2:1b") -> None:
        for _ in range(count):
            answer = httpx.post(proxy.url + "/api/generate", headers={"X-Client-Name": name}, timeout=30,
                                json={"model": model, "prompt": "count me", "stream": False, "options": {"num_predict": 4}})
            sent[name] += answer.status_code == 200

    def counted(name: str) -> None:
        until(lambda: client.scalar(f'sum(ollama_client_requests_total{{ollama_client="{name}"}})') == sent[name])

    send("grafana-a", 3)
    send("grafana-b", 5)
    for name in ("grafana-a", "grafana-b"):
        counted(name)
    cold_before = Counter((e["runner"], e["load_reason"]) for e in httpx.get(fake.url + "/fake/schedule").json() if e["load_reason"])
    range_starts = time.time()
    first_round = dict(sent)
    send("grafana-a", 4)
    send("grafana-c", 2, model="phi3:mini")  # a client and a model new in the range
    for name in ("grafana-a", "grafana-c"):
        counted(name)
    until(lambda: client.scalar('sum(ollama_model_loads_total{gen_ai_request_model="phi3:mini"})'))
    # two scrapes in the range at least, so that increase() has a growth to read for the series older than it
    until(lambda: client.scalar('min(timestamp(up{job="otel-proxy"}))') > range_starts + 1.5)
    at = time.time()
    dashboard_range = f"{int((at - range_starts) * 1000)}ms"  # the range begins at range_starts, to the millisecond

    def table(title: str, label: str, index: int = 0, over: str = dashboard_range) -> dict[str, float | None]:
        return {row[label]: value for row, value in client.vector(substituted(by_title[title][index]["expr"], over), at)}

    in_range = {name: sent[name] - first_round.get(name, 0) for name in sent}
    assert in_range == {"grafana-a": 4, "grafana-b": 0, "grafana-c": 2}, in_range
    shown = table("Requests by client", "ollama_client")
    assert {name: shown.get(name) for name in in_range} == {name: float(count) for name, count in in_range.items()}, shown
    truth = Counter((e["runner"], e["load_reason"]) for e in httpx.get(fake.url + "/fake/schedule").json() if e["load_reason"]) - cold_before
    cold = table("Cold loads and reloads", "gen_ai_request_model")
    assert truth == Counter({("phi3:mini", "cold"): 1}) and cold.get("phi3:mini") == 1.0, (cold, truth)
    assert cold.get("llama3.2:1b") == 0.0, cold  # loaded before the range: its growth in it, none
    # a range shorter than a scrape interval holds one sample of each series at most: no increase() to read, still
    # the growth since its start (none), not the count since the proxy started
    assert table("Cold loads and reloads", "gen_ai_request_model", over="500ms").get("llama3.2:1b") == 0.0
    resident = {entry["name"]: entry["size_vram"] for entry in httpx.get(fake.url + "/api/ps").json()["models"]}

    def loaded() -> dict[str, float | None]:
        return {row["model"]: value for row, value in client.vector(substituted(by_title["Loaded models"][0]["expr"]))}

    until(lambda: len(loaded()) == 2)  # the collector has read /api/ps since phi3:mini's load, and been scraped
    assert loaded() == {name: float(size) for name, size in resident.items()} and len(resident) == 2, (loaded(), resident)


def traffic(proxy_url: str, stop: threading.Event, ends: list[tuple[float, bool, float | None]]) -> None:
    """Streamed requests one after another until ``stop``: four in five on /api/generate (the first token at
    once), one in five on /v1/messages (its first token after the fake's first_delta_delay); each recorded as
    (end, answered 200, time to its first token by the client's clock)."""
    with httpx.Client(timeout=30) as client:
        number = 0
        while not stop.is_set():
            number += 1
            slow = number % 5 == 0
            path, body = ("/v1/messages", {"model": "llama3.2:1b", "max_tokens": 4, "stream": True, "messages": [{"role": "user", "content": "hi"}]}) if slow \
                else ("/api/generate", {"model": "llama3.2:1b", "prompt": "hi", "options": {"num_predict": 4}})
            started, first = time.perf_counter(), None
            with client.stream("POST", proxy_url + path, json=body) as answer:
                for line in answer.iter_lines():
                    output = line == "event: content_block_delta" if slow else line.startswith("{") and bool(json.loads(line).get("response"))
                    if first is None and output:
                        first = time.perf_counter() - started
            ends.append((time.time(), answer.status_code == 200, first))


def failures(proxy_url: str, stop: threading.Event, ends: list[tuple[float, bool, float | None]]) -> None:
    """A request for a model Ollama does not have (404) every 0.3 s."""
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            answer = client.post(proxy_url + "/api/generate", json={"model": "no-such-model", "prompt": "hi", "stream": False})
            ends.append((time.time(), answer.status_code == 200, None))
            time.sleep(0.3)


def test_the_stat_panels_show_the_fakes_truth(fleet):
    """The stat panels as Grafana would query them (every picker on All, a 10 s rate interval) at one instant in
    steady traffic, against what the clients and the fake counted in those 10 s: requests and their outcomes by
    the clients' own records, tokens by the fake's count, the time to first token p95 by the clients' clock
    (a fifth of them slow, so a median would land in another bucket), memory by a reading of the test's own."""
    import psutil

    fake, proxy, prom = fleet
    httpx.post(fake.url + "/fake/configure", json={"first_delta_delay": 0.4}, timeout=10)
    httpx.post(proxy.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": "warm", "stream": False}, timeout=30)
    ends: list[tuple[float, bool, float | None]] = []
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=target, args=args) for target, args in (
        (traffic, (proxy.url, stop, ends)), (failures, (proxy.url, stop, ends)), (sample_fake_tokens, (fake, stop, samples)))]
    try:
        for thread in threads:
            thread.start()
        time.sleep(16)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        httpx.post(fake.url + "/fake/configure", json={"first_delta_delay": 0.0}, timeout=10)
    at = time.time() - 2.5  # inside the traffic
    scraped(prom.url)  # and stored up to `at` and past it
    client = Prometheus(prom.url)
    panels = {panel["title"]: substituted(panel["targets"][0]["expr"]).replace("[1m]", "[10s]") for panel in grafana.dashboard()["panels"] if panel["type"] == "stat"}
    window = [(ok, first) for end, ok, first in ends if at - 10 < end <= at]
    assert len(window) > 40, len(window)

    assert client.scalar(panels["Requests/s"], at) == pytest.approx(len(window) / 10, rel=0.15)
    answered = sum(ok for ok, _ in window)
    assert 0.6 < answered / len(window) < 0.95  # both kinds of answer in the window
    assert client.scalar(panels["Success rate"], at) == pytest.approx(answered / len(window), abs=0.05)
    tokens = (interpolate(samples, at) - interpolate(samples, at - 10)) / 10
    assert tokens > 0 and client.scalar(panels["Tokens/s"], at) == pytest.approx(tokens, rel=0.1)

    firsts = sorted(first for ok, first in window if first is not None)
    client_p95 = firsts[min(len(firsts) - 1, int(0.95 * (len(firsts) - 1) + 0.5))]
    assert client_p95 > 0.35 and firsts[len(firsts) // 2] < 0.1, firsts  # the slow fifth, and a fast median
    low, high = bucket_around(client_p95 * 0.95, TIME_TO_FIRST_TOKEN_BUCKETS)[0], bucket_around(client_p95, TIME_TO_FIRST_TOKEN_BUCKETS)[1]
    assert low * 0.9 <= client.scalar(panels["Time to first token p95"], at) <= high * 1.1, (client_p95, low, high)

    memory = psutil.virtual_memory()
    assert client.scalar(panels["Memory used"]) == pytest.approx(memory.used / memory.total, rel=0.1)
    for title in ("GPU", "Power", "Temperature"):  # no GPU, power or temperature source on this host: no data
        assert client.scalar(panels[title]) is None, title
