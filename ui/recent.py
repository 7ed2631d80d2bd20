"""The request list of the picked instance: the proxies Prometheus scrapes, their /-/requests merged.

Queries only, no ``st.`` calls. The address of each proxy is the ``instance`` label of its
``otel-proxy`` scrape target, which Prometheus already knows; ``PROXY_URL`` is the fallback
when Prometheus has none (or cannot be reached).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx

from ui import now
from ui.queries import Filters, Prometheus, PrometheusError

LIST_LIMIT = 100


def proxy_urls(prom: Prometheus, f: Filters, fallback: str) -> list[str]:
    """The proxies of the picked host (all of them for none), as Prometheus scrapes them; [fallback] if none."""
    try:
        found = prom.vector("up" + f.host_only(f.proxy))
    except PrometheusError:
        return [fallback]
    instances = sorted({labels["instance"] for labels, _ in found if labels.get("instance")})
    return [f"http://{instance}" for instance in instances] or [fallback]


def merged_requests(urls: list[str], limit: int = LIST_LIMIT) -> tuple[list[dict], list[str]]:
    """Every proxy's recent requests, newest first, each with the ``instance`` it came from; and the proxies that did not answer."""

    def fetch(url: str) -> list[dict] | None:
        try:
            entries = httpx.get(url + "/-/requests", params={"limit": limit}, timeout=3, trust_env=False).json()["requests"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        return [{**entry, "instance": url.removeprefix("http://")} for entry in entries]

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(urls)))) as pool:
        answers = list(pool.map(fetch, urls))
    merged = [entry for answer in answers if answer for entry in answer]
    merged.sort(key=lambda entry: entry.get("start_time") or "", reverse=True)
    return merged[:limit], [url for url, answer in zip(urls, answers) if answer is None]


CUT_SLACK_S = 2.0  # the collector reads the log every 0.2 s, and its clock and the proxy's may differ a little


def log_cuts(collector_urls: list[str]) -> list[dict[str, Any]]:
    """The prompts Ollama cut lately, as the collectors read them in its log (their ``/-/live`` ``truncations``)."""
    found: list[dict[str, Any]] = []
    for url in collector_urls:
        live, _ = now.read(url, None)
        cuts = live.get("truncations") if isinstance(live, dict) else None
        found += [cut for cut in cuts or [] if isinstance(cut, dict)]
    return found


def cut_of(entry: dict[str, Any], cuts: list[dict[str, Any]]) -> str:
    """How a request's prompt was cut to fit its context: "9,000 → 4,099 tokens" where Ollama's log has the cut (same
    model, or one the log does not name while several runners run; its length after the cut the request's prompt
    tokens; while the request ran), "to fit num_ctx" where only its length says so (``prompt_cut``), else ""."""
    tokens, model = entry.get("input_tokens"), entry.get("model")
    try:
        start = datetime.fromisoformat(entry["start_time"]).timestamp()
    except (KeyError, TypeError, ValueError):
        start = None
    if tokens is not None and start is not None:
        end = start + (entry.get("duration_s") or 0.0)
        for cut in cuts:
            if cut.get("model") in (model, None) and cut.get("new") == tokens and start - CUT_SLACK_S <= cut.get("at", 0.0) <= end + CUT_SLACK_S:
                return f"{cut['prompt']:,} → {cut['new']:,} tokens"
    return "to fit num_ctx" if entry.get("prompt_cut") else ""
