"""Alerts that reach someone: a rule of alerts.yml fires for real in Prometheus, and the real Alertmanager, with
the project's alertmanager.yml, posts it to a webhook receiver with the labels and annotations the rule sets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import yaml

from ollama_otel_stack.stack.defaults import ALERT_RULES
from tests.harness import alertmanager, free_port, hw_collector, prometheus

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


def test_a_rule_that_fires_reaches_the_webhook_through_alertmanager(tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}"  # Ollama is not there: the collector's reads fail
    with (
        webhook_receiver() as (url, received),
        alertmanager(url) as manager,
        hw_collector(nowhere, "--interval", "1", "--sysfs-root", str(tmp_path)) as collector,
        prometheus({"hw-collector": [f"127.0.0.1:{collector.port}"]}, rules=rules_without_waiting(tmp_path, RULE),
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
        firing = [a for a in httpx.get(prom.url + "/api/v1/alerts").json()["data"]["alerts"] if a["labels"]["alertname"] == RULE]
        assert [a["state"] for a in firing] == ["firing"] and firing[0]["activeAt"], firing
        # And Alertmanager holds it, from Prometheus.
        held = httpx.get(manager.url + "/api/v2/alerts").json()
        assert [a["labels"]["alertname"] for a in held if a["labels"]["alertname"] == RULE] == [RULE]
