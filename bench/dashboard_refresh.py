"""What one dashboard refresh costs Prometheus: how many queries, and how long they take.

    python bench/dashboard_refresh.py [--traffic 20]

Runs fake Ollama → proxy → Prometheus (plus the hardware collector), sends traffic, then
renders the page with Streamlit's AppTest, counting every HTTP call the page makes to
Prometheus and timing it. A second tab within the cache's 4 s is rendered too: it should
cost Prometheus nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ollama_otel_stack.loadgen.traffic import Plan, run  # noqa: E402
from tests.support.harness import monitored_ollama  # noqa: E402
from ui import queries  # noqa: E402

calls: list[tuple[str, float, str]] = []  # every call the page made: path, seconds, query
_original = queries.Prometheus._get


def counted(self: queries.Prometheus, path: str, params: dict) -> object:
    """queries.Prometheus._get, timed: install with ``queries.Prometheus._get = counted``."""
    started = time.perf_counter()
    try:
        return _original(self, path, params)
    finally:
        calls.append((path, time.perf_counter() - started, str(params.get("query", ""))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traffic", type=float, default=20.0, help="seconds of traffic before the refresh")
    args = parser.parse_args()
    queries.Prometheus._get = counted  # type: ignore[method-assign]
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as sysfs, monitored_ollama(Path(sysfs)) as (fake, proxy, _, prom):
        asyncio.run(run(Plan(url=proxy.url, model="llama3.2:1b", concurrency=4, duration_s=args.traffic, max_tokens=24)))
        os.environ.update(PROMETHEUS_URL=prom.url, PROXY_URL=proxy.url, OLLAMA_URL=fake.url)
        page = str(Path(__file__).resolve().parent.parent / "ui" / "streamlit_app.py")
        for label in ("first tab (cold cache)", "second tab within 4 s (shared cache)"):
            calls.clear()
            started = time.perf_counter()
            AppTest.from_file(page, default_timeout=60).run()
            wall = time.perf_counter() - started
            instant = [t for p, t, _ in calls if p == "/api/v1/query"]
            ranged = [t for p, t, _ in calls if p == "/api/v1/query_range"]
            other = len(calls) - len(instant) - len(ranged)
            spent = sum(t for _, t, _ in calls)
            print(f"{label}: {len(calls)} Prometheus calls ({len(instant)} instant, {len(ranged)} range, {other} label lookups), "
                  f"{spent * 1000:.0f} ms in Prometheus calls"
                  + (f" (median {statistics.median(t for _, t, _ in calls) * 1000:.1f} ms)" if calls else "")
                  + f", page run {wall * 1000:.0f} ms")


if __name__ == "__main__":
    main()
