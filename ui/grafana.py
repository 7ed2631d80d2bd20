"""The Grafana dashboard, generated from the page's own PromQL (ui/queries.py), so the two never disagree.

    python -m ui.grafana > grafana/ollama-monitoring.json

Every panel's query is the function the Streamlit page calls, with Grafana's variables in
place of the pickers: ``$instance``, ``$model`` and ``$client`` (each with "All" as ``.*``),
``${datasource}`` for the Prometheus data source and ``$__rate_interval`` for rate windows.
tests/e2e/ui/test_grafana.py checks that the committed JSON is this module's output and runs every
panel's query against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from ui import queries
from ui.cards import CARDS
from ui.queries import Filters

TITLE = "Ollama monitoring"
UID = "ollama-monitoring"
RATE = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 42  # what Grafana 12 writes (the version @grafana/schema's Dashboard defaults to: tests/support/grafana_types)


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
    client = queries.per_client(F, "$__range")  # the tables count over the dashboard's range
    model = queries.per_model(F, "$__range")
    return [
        *(Panel(card.grafana_title or card.label, "stat", card.grafana_unit, ((card.label, card.query(F, RATE)),)) for card in CARDS if card.grafana_unit),
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


SIZES = {"stat": (6, 4), "timeseries": (12, 8), "table": (12, 8)}  # kind -> (width, height) on Grafana's 24-column grid


def layout(kinds: list[str]) -> list[dict[str, int]]:
    """Grid positions, left to right in rows, each row as tall as its tallest panel: none overlaps as stored
    (Grafana compacts a stored overlap on load, which hides it until the order or the heights change)."""
    positions, x, y, row_height = [], 0, 0, 0
    for kind in kinds:
        width, height = SIZES[kind]
        if x + width > 24:
            x, y, row_height = 0, y + row_height, 0
        positions.append({"h": height, "w": width, "x": x, "y": y})
        x, row_height = x + width, max(row_height, height)
    return positions


def _panel(index: int, panel: Panel, position: dict[str, int]) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": position,
        "fieldConfig": {"defaults": {"unit": panel.unit, "noValue": "no data"}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + number), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
             "instant": panel.kind != "timeseries", "range": panel.kind == "timeseries",
             # a table's instant vector as one table (one row per series), not one frame per series behind a picker
             "format": "table" if panel.kind == "table" else "time_series"}
            for number, (legend, expr) in enumerate(panel.targets)
        ],
    }


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "includeAll": True, "allValue": ".*", "multi": False, "refresh": 2, "sort": 1,
        "current": {"selected": True, "text": "All", "value": "$__all"},
    }


def dashboard() -> dict[str, Any]:
    board = panels()
    return {
        "uid": UID,
        "title": TITLE,
        "tags": ["ollama", "opentelemetry"],
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {"selected": False, "text": "default", "value": "default"}},  # Grafana's default Prometheus
            _variable("instance", "Instance", "label_values(up, instance)"),
            _variable("model", "Model", "label_values(gen_ai_server_request_duration_seconds_count, gen_ai_request_model)"),
            _variable("client", "Client", "label_values(ollama_client_requests_total, ollama_client)"),
        ]},
        "panels": [_panel(index, panel, position) for index, (panel, position) in enumerate(zip(board, layout([panel.kind for panel in board])))],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
