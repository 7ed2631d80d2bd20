"""What Ollama is working on right now (no Streamlit here; ui/streamlit_app.py draws it as "Now").

Two sources, each read as JSON (a second's old at most):

- the collector's ``/-/live``: each llama-server slot, from Ollama's own log (hw_collector/sources/ollama_log.py):
  reading the prompt (tokens read of the total, from the cache, the rate, the time left) or generating;
- the proxy's ``/-/in-flight``: each generation request it is passing on, who sent it, to which model, since when.

A slot takes a request after the proxy passed it on, so each slot, oldest first, is joined with the oldest request
still unmatched that arrived before the slot took it (the collector times a slot by when it read the line, after it
was written; both run on Ollama's host, one clock). A slot with none went to Ollama without the proxy; a request with no slot is waiting (in Ollama's queue, or for its model to
load), or its runner's log is not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from ui.queries import Filters, Prometheus, PrometheusError

STALLED_S = 60.0  # a prompt being read with no line for this long is stalled (a batch read writes one; the alert fires at 600 s)
WAITING, READING, STALLED, GENERATING, ANSWERING = "waiting", "reading the prompt", "stalled", "generating", "answering"


@dataclass(frozen=True)
class Row:
    since: float  # unix seconds: the proxy's arrival where known, else the slot's
    client: str | None  # None: it did not come through the proxy
    model: str | None
    route: str | None
    phase: str
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    read_tokens: int | None = None
    tokens_per_second: float | None = None
    eta_s: float | None = None

    @property
    def progress(self) -> float | None:
        """The share of the prompt in the slot (from the cache or read), while it is read."""
        if self.phase not in (READING, STALLED) or not self.prompt_tokens or self.read_tokens is None:
            return None
        return min(self.read_tokens / self.prompt_tokens, 1.0)


def rows(live: dict[str, Any] | None, in_flight: list[dict[str, Any]] | None) -> list[Row]:
    """One row a request in flight, oldest first. ``live`` None: the log is not read; ``in_flight`` None: the proxy
    cannot be read."""
    pending = sorted(in_flight or [], key=lambda r: r["started"])
    matched: set[int] = set()
    found: list[Row] = []
    for slot in sorted((live or {}).get("requests") or [], key=lambda s: s["since"]):
        index = next((i for i, r in enumerate(pending) if i not in matched and r["started"] <= slot["since"]), None)
        request = pending[index] if index is not None else {}
        if index is not None:
            matched.add(index)
        phase = GENERATING if slot["phase"] == "generating" else STALLED if slot["silent_s"] >= STALLED_S else READING
        found.append(Row(request.get("started", slot["since"]), request.get("client"), request.get("model") or slot.get("model"), request.get("route"), phase,
                         slot.get("prompt_tokens"), slot.get("cached_tokens"), slot.get("read_tokens"), slot.get("tokens_per_second"),
                         slot.get("eta_s") if phase == READING else None))
    for index, request in enumerate(pending):
        if index not in matched:
            found.append(Row(request["started"], request["client"], request["model"], request["route"], ANSWERING if request["phase"] == "answering" else WAITING))
    return sorted(found, key=lambda row: row.since)


def hosts(prom: Prometheus, f: Filters, collector_fallback: str, proxy_fallback: str) -> dict[str, tuple[str | None, str | None]]:
    """Each host's collector and proxy, as Prometheus scrapes them (the picked host's, or all); the settings' own where
    Prometheus names none."""
    try:
        found = {job: [labels["instance"] for labels, _ in prom.vector("up" + f.host_only(selector)) if labels.get("instance")]
                 for job, selector in (("collector", f.collector), ("proxy", f.proxy))}
    except PrometheusError:
        found = {}
    pairs: dict[str, tuple[str | None, str | None]] = {}
    for job, instances in found.items():
        for instance in sorted(instances):
            host = instance.rsplit(":", 1)[0]
            collector, proxy = pairs.get(host, (None, None))
            pairs[host] = (f"http://{instance}", proxy) if job == "collector" else (collector, f"http://{instance}")
    return pairs or {"": (collector_fallback, proxy_fallback)}


def read(collector_url: str | None, proxy_url: str | None, timeout_s: float = 2.0) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
    """The collector's /-/live and the proxy's /-/in-flight; None for one that cannot be read."""

    def get(url: str) -> Any:
        try:
            answer = httpx.get(url, timeout=timeout_s, trust_env=False)
            return answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    live = get(collector_url.rstrip("/") + "/-/live") if collector_url else None
    in_flight = get(proxy_url.rstrip("/") + "/-/in-flight") if proxy_url else None
    return live, in_flight.get("requests") if isinstance(in_flight, dict) else None
