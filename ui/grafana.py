"""The Grafana dashboard, generated from the page's own PromQL (ui/queries.py), so the two never disagree.

    python -m ui.grafana > grafana/ollama-monitoring.json

Every panel's query is the function the Streamlit page calls, with Grafana's variables in
place of the pickers: ``$instance``, ``$model`` and ``$client`` (each with "All" as ``.*``),
``${datasource}`` for the Prometheus data source and ``$__rate_interval`` for rate windows.
tests/test_grafana.py checks that the committed JSON is this module's output and runs every
panel's query against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from ui import queries
from ui.queries import Filters

TITLE = "Ollama monitoring"
UID = "ollama-monitoring"
RATE = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class TemplateFilters(Filters):
    """Filters whose values are Grafana variables: matched as regular expressions, unescaped."""

    def labels(self, *extra: str, model_label: str = "gen_ai_request_model") -> str:
        matchers = [*extra, 'instance=~"$instance"']
        if model_label:
            matchers.append(f'{model_label}=~"$model"')
        return "{" + ",".join(matchers) + "}"

    def client_labels(self, *extra: str) -> str:
        return self.host_only(*extra, 'ollama_client=~"$client"')


F = TemplateFilters(host="$instance", model="$model", client="$client")


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # "stat", "timeseries" or "table"
    unit: str  # Grafana's unit id
    targets: tuple[tuple[str, str], ...]  # (legend, PromQL)


def panels() -> list[Panel]:
    """The page's questions, in the page's order."""
    client = queries.per_client(F, RATE)
    model = queries.per_model(F, "$__range")
    return [
        Panel("Requests/s", "stat", "reqps", (("requests/s", queries.request_rate(F, RATE)),)),
        Panel("Success rate", "stat", "percentunit", (("success", queries.success_rate(F, RATE)),)),
        Panel("Tokens/s", "stat", "short", (("tokens/s", queries.tokens_per_second(F, RATE)),)),
        Panel("Time to first token p95", "stat", "s", (("p95", queries.time_to_first_token_quantile(0.95, F, RATE)),)),
        Panel("GPU", "stat", "percentunit", (("GPU", queries.gpu_utilization(F)),)),
        Panel("Power", "stat", "watt", (("W", queries.power_watts(F)),)),
        Panel("Temperature", "stat", "celsius", (("°C", queries.temperature_celsius(F)),)),
        Panel("Memory used", "stat", "bytes", (("used", queries.memory_used_bytes(F)),)),
        Panel("Latency by endpoint", "timeseries", "s",
              tuple((f"p{int(q * 100)} {{{{http_route}}}}", queries.latency_by_endpoint(q, F, RATE)) for q in queries.LATENCY_QUANTILES)),
        Panel("Token generation", "timeseries", "short", (("tokens/s", queries.tokens_per_second(F, RATE)),)),
        Panel("Time to first token (p95)", "timeseries", "s", (("p95", queries.time_to_first_token_quantile(0.95, F, RATE)),)),
        Panel("GPU utilisation", "timeseries", "percentunit", (("GPU", queries.gpu_utilization(F)),)),
        Panel("Power draw", "timeseries", "watt", (("W", queries.power_watts(F)),)),
        Panel("Loaded models", "table", "bytes", (("VRAM {{model}}", queries.loaded_models(F)["vram_bytes"]),)),
        Panel("Cold loads and reloads", "table", "short", (("cold {{gen_ai_request_model}}", model["cold_loads"]), ("reloads {{gen_ai_request_model}}", model["reloads"]))),
        Panel("Share of generation time by client", "timeseries", "s", (("{{ollama_client}}", f"sum by (ollama_client) (rate(ollama_client_request_duration_seconds_sum{F.client_labels()}[{RATE}]))"),)),
        Panel("Requests by client", "table", "short", (("{{ollama_client}}", client["requests"]),)),
    ]


def _panel(index: int, panel: Panel) -> dict[str, Any]:
    width = 6 if panel.kind == "stat" else 12
    per_row = 24 // width
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 4 if panel.kind == "stat" else 8, "w": width, "x": (index % per_row) * width, "y": index},
        "fieldConfig": {"defaults": {"unit": panel.unit, "noValue": "no data"}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + number), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
             "instant": panel.kind != "timeseries", "range": panel.kind == "timeseries"}
            for number, (legend, expr) in enumerate(panel.targets)
        ],
    }


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": name}, "definition": query,
        "includeAll": True, "allValue": ".*", "multi": False, "refresh": 2, "sort": 1,
        "current": {"text": "All", "value": "$__all"},
    }


def dashboard() -> dict[str, Any]:
    return {
        "uid": UID,
        "title": TITLE,
        "tags": ["ollama", "opentelemetry"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus", "current": {}},
            _variable("instance", "Instance", "label_values(up, instance)"),
            _variable("model", "Model", "label_values(gen_ai_server_request_duration_seconds_count, gen_ai_request_model)"),
            _variable("client", "Client", "label_values(ollama_client_requests_total, ollama_client)"),
        ]},
        "panels": [_panel(index, panel) for index, panel in enumerate(panels())],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
