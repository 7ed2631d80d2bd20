"""The dashboard's settings: one object, read from the environment once per run of the page (and once by each
command line, ``python -m ui.status`` and ``python -m ui.usage``). No other module of ui/ reads the environment.

| variable | default | what |
|---|---|---|
| PROMETHEUS_URL | http://127.0.0.1:9090 | where every number comes from |
| PROXY_URL | http://127.0.0.1:8001 | the request list, when Prometheus does not know the proxy (ui/recent.py) |
| OLLAMA_URL | http://127.0.0.1:11434 | the status line's model |
| JAEGER_URL | none | links from each request to its trace |
| UI_CARD_WINDOW | 1m | the window of the cards' rates (a PromQL duration) |
| STATUS_MODEL, STATUS_TIMEOUT | phi3:mini, 20 | the status line's model and how long it may take (s) |
| UI_PROXY_JOB, UI_COLLECTOR_JOB | otel-proxy, hw-collector | the Prometheus jobs of the two services (docs/metrics.md) |
| USAGE_PRICE_PER_KWH, USAGE_CURRENCY | none | the Usage view's cost column (both, or neither) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ollama_otel_stack.stack.defaults import COLLECTOR_PORT, OLLAMA_URL, PROMETHEUS_PORT, PROXY_PORT, local_url


class SettingsError(ValueError):
    """A variable that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    prometheus_url: str = local_url(PROMETHEUS_PORT)
    proxy_url: str = local_url(PROXY_PORT)
    collector_url: str = local_url(COLLECTOR_PORT)  # its /-/live: what Ollama's log says each slot is doing ("Now")
    ollama_url: str = OLLAMA_URL
    jaeger_url: str = ""
    card_window: str = "1m"
    status_model: str = "phi3:mini"
    status_timeout_s: float = 20.0
    proxy_job: str = "otel-proxy"
    collector_job: str = "hw-collector"
    price_per_kwh: str = ""  # read as a number, with its currency, by ui/usage.py price_of
    currency: str = ""


DEFAULTS = Settings()


def read(environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings the environment gives (an empty variable is its default)."""

    def get(name: str, default: str) -> str:
        return environ.get(name) or default

    try:
        timeout = float(get("STATUS_TIMEOUT", str(DEFAULTS.status_timeout_s)))
    except ValueError as exc:
        raise SettingsError(f"STATUS_TIMEOUT={environ.get('STATUS_TIMEOUT')!r} is not a number of seconds") from exc
    return Settings(
        prometheus_url=get("PROMETHEUS_URL", DEFAULTS.prometheus_url),
        proxy_url=get("PROXY_URL", DEFAULTS.proxy_url),
        collector_url=get("COLLECTOR_URL", DEFAULTS.collector_url),
        ollama_url=get("OLLAMA_URL", DEFAULTS.ollama_url),
        jaeger_url=get("JAEGER_URL", DEFAULTS.jaeger_url),
        card_window=get("UI_CARD_WINDOW", DEFAULTS.card_window),
        status_model=get("STATUS_MODEL", DEFAULTS.status_model),
        status_timeout_s=timeout,
        proxy_job=get("UI_PROXY_JOB", DEFAULTS.proxy_job),
        collector_job=get("UI_COLLECTOR_JOB", DEFAULTS.collector_job),
        price_per_kwh=get("USAGE_PRICE_PER_KWH", ""),
        currency=get("USAGE_CURRENCY", ""),
    )
