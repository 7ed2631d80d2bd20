"""Numbers that stay right once Ollama ships its own /metrics (issue 24).

An open Ollama pull request (#18508, shared/ollama-facts.md) publishes four of this project's names
with labels of its own. The fake serves such a /metrics (tests/fake/ollama.py ``metrics``); one real
Prometheus scrapes it beside the proxy and the collector, another scrapes only those two. Every query of the
project that names one of the four (each the page sends as it draws every view, the Grafana panels, the alert and
recording rules) must read the same from both, while a query that does not select the job would count twice.
"""

from __future__ import annotations

import json
import re
import threading
import time

import httpx
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from tests.support.harness import ROOT, configure_fake, fake_ollama, hw_collector, otel_proxy, prometheus, substituted, until
from ui import queries
from ui.queries import Filters, Prometheus

COLLIDING = ("ollama_prompt_tokens_total", "ollama_generated_tokens_total", "ollama_loaded_model_size_bytes", "ollama_loaded_model_vram_bytes")


def project_queries(prometheus_url: str, monkeypatch) -> set[str]:
    """Every PromQL expression the project asks: each query the page sends while it draws each of its views (the
    cards, tables, charts, advice and status of Live, Sessions, Usage and Residency), the Grafana dashboard's
    panels, and alerts.yml's and recording.yml's rules."""
    sent: set[str] = set()
    original = Prometheus._get

    def spy(self, path, params):
        if "query" in params:
            sent.add(str(params["query"]))
        return original(self, path, params)

    monkeypatch.setattr(Prometheus, "_get", spy)
    monkeypatch.setenv("PROMETHEUS_URL", prometheus_url)
    app = AppTest.from_file(str(ROOT / "ui" / "streamlit_app.py"), default_timeout=60)
    app.run()
    for view in app.sidebar.radio[0].options:
        app.sidebar.radio[0].set_value(view).run()
        assert not app.exception, (view, [e.message for e in app.exception])
    board = json.loads((ROOT / "grafana" / "ollama-monitoring.json").read_text())
    sent.update(substituted(target["expr"]) for panel in board["panels"] for target in panel["targets"])
    for rules in ("alerts.yml", "recording.yml"):
        sent.update(rule["expr"] for group in yaml.safe_load((ROOT / rules).read_text())["groups"] for rule in group["rules"])
    return sent


def answers(prom: Prometheus, promql: str, at: float) -> dict[frozenset, float | None]:
    return {frozenset(labels.items()): value for labels, value in prom.vector(promql, at)}


def test_scraping_ollamas_own_metrics_beside_the_proxy_changes_no_query_of_the_project(tmp_path, monkeypatch):
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
            try:
                until(lambda: Prometheus(alone.url).scalar("sum(ollama_generated_tokens_total)"), deadline_s=30)
                asked = {promql for promql in project_queries(both.url, monkeypatch) if any(name in promql for name in COLLIDING)}
                started = time.time()
                until(lambda: (Prometheus(alone.url).scalar("min(timestamp(up))") or 0) > started + 11, deadline_s=60)  # 10 s windows full
                at = time.time() - 2  # both have scraped up to here
                read = {promql: (answers(Prometheus(both.url), promql, at), answers(Prometheus(alone.url), promql, at)) for promql in asked}
                loaded = {column: Prometheus(both.url).scalar(promql, at) for column, promql in queries.loaded_models(Filters(model="qwen2.5:7b")).items()}
                unselected = (Prometheus(both.url).scalar("sum(rate(ollama_generated_tokens_total[10s]))", at),
                              Prometheus(alone.url).scalar("sum(rate(ollama_generated_tokens_total[10s]))", at))
            finally:
                stop.set()
                worker.join()
    # The stand-in is scraped: a query that does not select the job counts every token twice.
    assert unselected[0] == pytest.approx(2 * unselected[1], rel=0.2), unselected
    print(f"{len(asked)} queries of the project name a family Ollama's /metrics shares; {sum(1 for w, _ in read.values() if w)} answer here")
    assert len(asked) >= 10, sorted(asked)
    # each selector of a shared family names its job, those of queries with nothing to answer yet too (the hourly rules)
    for promql in asked:
        for name, matchers in re.findall(r"\b(" + "|".join(COLLIDING) + r")\b(\{[^}]*\})?", promql):
            assert re.search(r'\bjob=~?"', matchers or ""), (name, promql)
    answered = 0
    for promql, (with_native, without) in read.items():
        assert set(with_native) == set(without), (promql, with_native, without)
        for labels, value in without.items():
            assert with_native[labels] == pytest.approx(value, rel=0.1, nan_ok=True), (promql, dict(labels), with_native[labels], value)
        answered += bool(without)
    assert answered >= 6, answered  # the cards and tables on tokens and the loaded models answer during this traffic
    assert loaded["size_bytes"] == 6_010_000_000 and loaded["vram_bytes"] == 4_500_000_000, loaded
