"""Alerts that reach someone: a rule of alerts.yml fires for real in Prometheus, and the real Alertmanager, with
the project's alertmanager.yml, posts it to a webhook receiver with the labels and annotations the rule sets."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import yaml
from streamlit.testing.v1 import AppTest

from ollama_otel_stack.go_time import unix_seconds
from ollama_otel_stack.stack.defaults import ALERT_RULES
from tests.support.harness import ROOT, alertmanager, configure_fake, free_port, hw_collector, otel_proxy, prometheus, scrape
from ui.alerts import Firing, firing

RULE = "OllamaUnreachable"  # max by (instance) (ollama_up) == 0, for 1m: the collector's /api/ps calls fail


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP endpoint that keeps every JSON body posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


def rules_without_waiting(directory, rule: str) -> str:
    """alerts.yml as it is, but ``rule`` fires as soon as its condition holds (its ``for:`` is 1 minute)."""
    rules = yaml.safe_load(ALERT_RULES.read_text())
    (found,) = [entry for group in rules["groups"] for entry in group["rules"] if entry.get("alert") == rule]
    found["for"] = "0s"
    path = directory / "alerts.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def test_a_rule_that_fires_reaches_the_webhook_through_alertmanager_and_tops_the_page(tmp_path, monkeypatch):
    nowhere = f"http://127.0.0.1:{free_port()}"  # Ollama is not there: the collector's reads fail
    with (
        webhook_receiver() as (url, received),
        alertmanager(url) as manager,
        hw_collector(nowhere, "--interval", "1", "--sysfs-root", str(tmp_path)) as collector,
        prometheus({"hw-collector": [f"127.0.0.1:{collector.port}"]}, rules=[rules_without_waiting(tmp_path, RULE)],
                   alertmanagers=[f"127.0.0.1:{manager.port}"]) as prom,
    ):
        instance = f"127.0.0.1:{collector.port}"
        deadline = time.monotonic() + 60
        while not any(alert["labels"].get("alertname") == RULE for body in received for alert in body["alerts"]):
            assert time.monotonic() < deadline, (received, httpx.get(prom.url + "/api/v1/alerts").json())
            time.sleep(0.5)
        (body,) = [body for body in received if any(alert["labels"]["alertname"] == RULE for alert in body["alerts"])][:1]
        (alert,) = [alert for alert in body["alerts"] if alert["labels"]["alertname"] == RULE]
        assert body["status"] == alert["status"] == "firing" and body["receiver"] == "webhook"
        assert alert["labels"] == {"alertname": RULE, "instance": instance, "severity": "critical"}, alert["labels"]
        assert alert["annotations"] == {"summary": f"Ollama does not answer on {instance}",
                                        "description": "The hardware collector's /api/ps calls fail; requests through the proxy get 502."}
        assert body["groupLabels"] == {"alertname": RULE, "instance": instance}  # alertmanager.yml's group_by
        # What the page reads: Prometheus's own list of what fires, since when.
        active = [a for a in httpx.get(prom.url + "/api/v1/alerts").json()["data"]["alerts"] if a["labels"]["alertname"] == RULE]
        assert [a["state"] for a in active] == ["firing"] and active[0]["activeAt"], active
        # And Alertmanager holds it, from Prometheus.
        held = httpx.get(manager.url + "/api/v2/alerts").json()
        assert [a["labels"]["alertname"] for a in held if a["labels"]["alertname"] == RULE] == [RULE]
        # The page: the firing alert first, with how long it has fired (since Prometheus made it active: for 0s).
        since = unix_seconds(active[0]["activeAt"])
        for name, value in {"PROMETHEUS_URL": prom.url, "PROXY_URL": nowhere, "OLLAMA_URL": nowhere}.items():
            monkeypatch.setenv(name, value)
        app = AppTest.from_file(str(ROOT / "ui" / "streamlit_app.py"), default_timeout=60)
        app.run()
        shown_at = time.time()
        assert not app.exception, [e.message for e in app.exception]
        first = re.sub(r"\\(.)", r"\1", app.error[0].value)  # as written, markdown's escapes taken off
        found = re.fullmatch(rf"{RULE} \(critical\) on {re.escape(instance)}, firing for (\d+) s: Ollama does not answer on {re.escape(instance)}", first)
        # for 0s: fired from its activeAt; the page computed n between our reading of activeAt and shown_at
        assert found and shown_at - since - 60 <= int(found.group(1)) <= shown_at - since + 1, (first, shown_at - since)


def test_firing_since_counts_from_when_the_rule_held_for_its_for_and_the_worst_come_first():
    """/api/v1/rules as Prometheus answers it: a rule's alerts carry activeAt (when its condition began to hold);
    one with ``for: 5m`` fires 300 s later. Pending and inactive ones are not shown; a host picked shows only its own."""
    def rule(name, duration, *alerts):
        return {"name": name, "type": "alerting", "duration": duration, "alerts": list(alerts)}

    def alert(name, severity, instance, state, active):
        return {"labels": {"alertname": name, "severity": severity, "instance": instance}, "annotations": {"summary": f"{name} says"},
                "state": state, "activeAt": active}

    groups = [{"name": "ollama-monitoring", "rules": [
        rule("Slow", 300, alert("Slow", "warning", "a:1", "firing", "2026-12-03T10:00:00.123456789Z"), alert("Slow", "warning", "b:1", "pending", "2026-12-03T10:20:00Z")),
        rule("Down", 60, alert("Down", "critical", "b:1", "firing", "2026-12-03T10:10:00Z")),
        {"name": "a recording rule", "type": "recording"},
    ]}]
    base = unix_seconds("2026-12-03T10:00:00Z")
    assert firing(groups) == [Firing("Down", "critical", "b:1", "Down says", base + 660), Firing("Slow", "warning", "a:1", "Slow says", base + 300.123456)]
    assert [f.name for f in firing(groups, "a:1")] == ["Slow"]
    assert firing(groups)[1].line(base + 300.123456 + 3 * 3600) == "Slow (warning) on a:1, firing for 3.0 h: Slow says"
    assert firing(groups)[0].line(base + 660 + 75) == "Down (critical) on b:1, firing for 75 s: Down says"


def test_ollamas_server_busy_reaches_the_client_unchanged_is_counted_and_fires_the_alert(fake, tmp_path):
    """ErrMaxQueue for real: past OLLAMA_MAX_QUEUE (0 here) a request that needs a load gets Ollama's 503 and its body
    (server/sched.go, server/routes.go handleScheduleError); the proxy passes it on byte for byte, counts it under
    error_type="503", and alerts.yml's OllamaUpstreamErrors fires from it in a real Prometheus."""
    busy = "OllamaUpstreamErrors"
    configure_fake(fake, unload=True, max_queue=0)
    try:
        with otel_proxy(fake.url) as proxy, prometheus({"otel-proxy": [f"127.0.0.1:{proxy.port}"]}, rules=[rules_without_waiting(tmp_path, busy)]) as prom:
            body = {"model": "llama3.2:1b", "prompt": "hi", "stream": True}
            direct = httpx.post(fake.url + "/api/generate", json=body)
            answers = [httpx.post(proxy.url + "/api/generate", json=body) for _ in range(20)]
            assert direct.status_code == 503 and direct.json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
            assert all((a.status_code, a.content, a.headers["content-type"]) == (503, direct.content, direct.headers["content-type"]) for a in answers)
            scraped = scrape(proxy.url)
            assert scraped.value("http_server_request_duration_seconds_count", error_type="503", http_response_status_code="503") == 20
            assert scraped.value("ollama_client_requests_total", error_type="503") == 20
            deadline = time.monotonic() + 60
            while True:  # the rule reads a rate: the 503s go on until it fires
                assert httpx.post(proxy.url + "/api/generate", json=body).status_code == 503
                alerts = [a for a in httpx.get(prom.url + "/api/v1/alerts").json()["data"]["alerts"] if a["labels"]["alertname"] == busy]
                if any(a["state"] == "firing" for a in alerts):
                    break
                assert time.monotonic() < deadline, alerts
                time.sleep(0.25)
            assert alerts[0]["labels"] == {"alertname": busy, "instance": f"127.0.0.1:{proxy.port}", "severity": "warning"}
            assert float(alerts[0]["value"]) == 1.0  # every request through the proxy failed
    finally:
        configure_fake(fake, max_queue=512)

