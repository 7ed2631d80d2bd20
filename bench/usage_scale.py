"""History at fleet size: the Usage and Residency views over 30 days of 10 hosts x 100 models, against the Live view.

One Prometheus holds what each view reads, built with promtool:

- the Live view's series: bench/dashboard_scale.py's real proxy and collector pages, repeated for every host every
  15 s over the last --minutes;
- 30 days of usage counters for the same fleet (tests/support/backfill.py, a sample every --usage-step seconds, three
  clients), with recording.yml evaluated over them every hour (``promtool tsdb create-blocks-from rules``), as
  Prometheus records them;
- 30 days of residency, to now: on each host three models resident at a time, a cold load every two hours pushing
  the oldest out (the collector's /api/ps gauges every --residency-step seconds, the proxy's load counter every
  4 minutes and at each load), with recording.yml's residency records evaluated over them the same way, to this
  hour. The samples are sparser than a 5 s scrape, which the two views do not read over 30 days: they read the
  hourly records (``--residency-step`` shows it; the timeline is also timed alone, from the samples).

The page is rendered with Streamlit's AppTest in each view, its caches cleared before each of --rounds refreshes,
every call to Prometheus counted (bench/dashboard_refresh.py). Target (issue 25): the Usage view over 30 days, and
the Residency view over 30 days, each within 2x the Live view's refresh over its 1-hour window.

    python bench/usage_scale.py [--hosts 10] [--models 100] [--days 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dashboard_refresh import calls, counted  # noqa: E402
from bench.dashboard_scale import pages, queries_cache_clear, write_openmetrics  # noqa: E402
from ollama_otel_stack.stack.defaults import RECORDING_RULES  # noqa: E402
from tests.support.backfill import DAY_S, Stay, backfill, backfill_rules, write_history, write_residency  # noqa: E402
from tests.support.harness import free_port, require_tool, run_server  # noqa: E402
from ui import queries, residency  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESIDENT_AT_ONCE = 3
LOAD_EVERY_S = 2 * 3600
VIEWS = ("Live", "Usage", "Residency")
SLOWEST: dict[str, list[tuple[str, float, str]]] = {}  # each view's Prometheus calls, for --slowest


def rotation(start: int, end: int, hosts: list[str], models: list[str]) -> list[Stay]:
    """On each host three models resident at a time, a cold load every two hours pushing the oldest out."""
    stays: list[Stay] = []
    for number, host in enumerate(hosts):
        resident: list[tuple[str, int]] = []  # (model, loaded at), oldest first
        for index, at in enumerate(range(start, end, LOAD_EVERY_S)):
            if len(resident) == RESIDENT_AT_ONCE:
                gone, since = resident.pop(0)
                stays.append(Stay(host, gone, since, at))
            resident.append((models[(number * 7 + index) % len(models)], at))
        stays.extend(Stay(host, model, since, end) for model, since in resident)
    return stays


def settled_blocks(data: Path, quiet_s: float = 75.0, limit_s: float = 900.0) -> list[int]:
    """Wait until Prometheus has compacted promtool's blocks (the rule backfill writes thousands of small ones, which
    no Prometheus that records its own rules ever holds): the block counts seen, until none changed for ``quiet_s``."""
    counts = [sum(1 for entry in data.iterdir() if entry.is_dir() and len(entry.name) == 26)]
    deadline, still = time.monotonic() + limit_s, time.monotonic()
    while time.monotonic() - still < quiet_s and time.monotonic() < deadline:
        time.sleep(1)
        now = sum(1 for entry in data.iterdir() if entry.is_dir() and len(entry.name) == 26)
        if now != counts[-1]:
            counts.append(now)
            still = time.monotonic()
    return counts


def render(prometheus_url: str, view: str) -> tuple[int, float, float]:
    """One refresh of the page in ``view``, caches cleared: Prometheus calls, seconds in them, the page run's seconds."""
    from streamlit.testing.v1 import AppTest

    os.environ.update(PROMETHEUS_URL=prometheus_url, PROXY_URL=f"http://127.0.0.1:{free_port()}", OLLAMA_URL=f"http://127.0.0.1:{free_port()}")
    app = AppTest.from_file(str(ROOT / "ui" / "streamlit_app.py"), default_timeout=300)
    app.run()  # the Live view, as the page opens
    if view != "Live":
        app.sidebar.radio[0].set_value(view)
        if view == "Residency":
            app.run()
            app.radio[0].set_value("last 30 days")
    queries_cache_clear()
    calls.clear()
    started = time.perf_counter()
    app.run()
    wall = time.perf_counter() - started
    assert not app.exception, [e.message for e in app.exception]
    assert view == "Live" or app.dataframe, f"the {view} view found nothing to show"
    SLOWEST.setdefault(view, []).extend(calls)
    return len(calls), sum(t for _, t, _ in calls), wall


def timed_timeline(prometheus_url: str, recorded: bool, days: int) -> float:
    """Seconds to read the timeline over ``days``, from recording.yml's records or from the samples alone."""
    end = time.time()
    started = time.perf_counter()
    residency.timeline(queries.Prometheus(prometheus_url), queries.Filters(), end - days * DAY_S, end, recorded=recorded)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=10.0, help="of the Live view's series")
    parser.add_argument("--usage-step", type=int, default=1800, help="seconds between the usage counters' samples")
    parser.add_argument("--residency-step", type=int, default=60, help="seconds between the /api/ps gauges' samples")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slowest", type=int, default=0, help="also print each view's N slowest Prometheus calls")
    args = parser.parse_args()
    queries.Prometheus._get = counted  # type: ignore[method-assign]
    promtool, prometheus = require_tool("promtool"), require_tool("prometheus")
    hosts = [f"host-{index}" for index in range(args.hosts)]
    models = [f"model-{index}:7b" for index in range(args.models)]
    start = (int(time.time()) // DAY_S - args.days) * DAY_S
    with tempfile.TemporaryDirectory() as directory:
        work, data = Path(directory), Path(directory) / "data"
        built = time.perf_counter()
        proxy_page, collector_page = pages(args.models, work)
        live = write_openmetrics(work / "live.om", proxy_page, collector_page, args.hosts, args.minutes)
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "live.om"), str(data)], check=True, capture_output=True)
        (work / "live.om").unlink()
        write_history(work / "usage.om", start, args.days, hosts, models, ["open-webui", "claude-code", "scripts"], step_s=args.usage_step)
        stays = rotation(start, int(time.time()), hosts, models)
        write_residency(work / "residency.om", stays, int(time.time()), args.residency_step)
        for name in ("usage.om", "residency.om"):
            backfill(promtool, work / name, data)
            (work / name).unlink()
        config = work / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\n")
        port = free_port()
        args_prometheus = [prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}",
                           "--storage.tsdb.retention.time=10y"]
        with run_server(args_prometheus, port, "/-/ready", timeout=600) as server:
            # to this hour, as a Prometheus evaluating recording.yml all along has them (the hour since is read raw)
            backfill_rules(promtool, server.url, RECORDING_RULES, start, int(time.time()) // 3600 * 3600 + 1, work / "rules")
        for block in (work / "rules").iterdir():
            block.rename(data / block.name)
        built = time.perf_counter() - built
        with run_server(args_prometheus, port, "/-/ready", timeout=600) as server:
            blocks = settled_blocks(data)
            print(f"{args.hosts} hosts x {args.models} models: {live:,} live series over {args.minutes:g} min, {args.days} days of usage "
                  f"(a sample every {args.usage_step} s, recording.yml hourly) and residency ({len(stays):,} stays); built in {built:.0f} s; "
                  f"{blocks[0]} blocks, {blocks[-1]} once Prometheus had compacted them. "
                  f"Medians of {args.rounds} refreshes, caches cleared.\n")
            print("| view | range | Prometheus calls | in Prometheus (ms) | page run (ms) | x the Live view |")
            print("|---|---|---|---|---|---|")
            for view in VIEWS:
                render(server.url, view)  # warm: Prometheus' caches, Streamlit's imports
            results = {view: [render(server.url, view) for _ in range(args.rounds)] for view in VIEWS}
            read = {recorded: [timed_timeline(server.url, recorded, args.days) for _ in range(args.rounds)] for recorded in (True, False)}
    live_run = statistics.median(r[2] for r in results["Live"])
    for view, label in zip(VIEWS, ("1 h charts, 1 min cards", "30 days, per day", "30 days")):
        runs = results[view]
        wall = statistics.median(r[2] for r in runs)
        print(f"| {view} | {label} | {runs[0][0]} | {statistics.median(r[1] for r in runs) * 1000:.0f} | {wall * 1000:.0f} | {wall / live_run:.2f} |")
    print(f"\nThe {args.days}-day timeline alone (ui.residency.timeline), median: {statistics.median(read[True]) * 1000:.0f} ms from the hourly records, "
          f"{statistics.median(read[False]) * 1000:.0f} ms from the samples.")
    for view in VIEWS if args.slowest else ():
        for path, seconds, query in sorted(SLOWEST[view], key=lambda call: call[1], reverse=True)[: args.slowest]:
            print(f"{view}: {seconds * 1000:7.1f} ms {path} {query[:150]}")


if __name__ == "__main__":
    main()
