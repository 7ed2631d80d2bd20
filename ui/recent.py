"""The request list of the picked instance: the proxies Prometheus scrapes, their /-/requests merged.

Queries only, no ``st.`` calls. The address of each proxy is the ``instance`` label of its
``otel-proxy`` scrape target, which Prometheus already knows; ``PROXY_URL`` is the fallback
when Prometheus has none (or cannot be reached).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

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
