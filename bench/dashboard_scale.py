"""A dashboard refresh against a Prometheus holding a fleet: 10 hosts x 100 models, against 1 host x 3.

The series are real: a proxy in front of the fake Ollama with every model used on /api/chat
and /v1/chat/completions (streaming, so every generation family is there), and a hardware
collector with 8 stand-in NVIDIA boards and 20 resident models; their /metrics pages are
read once. Each page is then repeated for every host (its own ``instance``) and every
15 s over the last --minutes (counters growing, gauges steady), written as OpenMetrics,
and turned into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics``. A real
Prometheus serves them, and the page is rendered with Streamlit's AppTest, every call it
makes to Prometheus counted and timed (as bench/dashboard_refresh.py does).

    python bench/dashboard_scale.py [--hosts 10] [--models 100] [--minutes 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.harness import configure_fake, fake_ollama, free_port, hw_collector, otel_proxy, require_tool, run_server  # noqa: E402
from bench.dashboard_refresh import calls, counted  # noqa: E402
from ui import queries  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STEP_S = 15
every_call: list[tuple[str, float, str]] = []  # the fleet's refreshes (--slowest prints the top ones)


def pages(models: int, workdir: Path) -> tuple[str, str]:
    """One proxy's and one collector's /metrics after every model was used."""
    names = [f"model-{index}:7b" for index in range(models)]
    stand_ins = ROOT / "tests" / "support" / "stand_ins"
    env = {"PYTHONPATH": os.pathsep.join([str(stand_ins), str(ROOT)]), "STAND_IN_NVML_GPUS": "8"}
    with fake_ollama(token_delay=0.0002, load_delay=0) as fake, otel_proxy(fake.url, "--max-models", str(max(models, 1))) as proxy:
        configure_fake(fake, chunk_texts={name: "tok " for name in names})
        with httpx.Client(timeout=60) as client:
            for name in names:
                for route, body in (("/api/chat", {"model": name, "messages": [], "options": {"num_predict": 3}}),
                                    ("/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "x"}], "stream": True,
                                                              "max_tokens": 3, "stream_options": {"include_usage": True}})):
                    client.post(proxy.url + route, json=body)
        proxy_page = httpx.get(proxy.url + "/metrics").text
        for name in names[:20]:
            httpx.post(fake.url + "/api/generate", json={"model": name, "prompt": "x", "stream": False}, timeout=30)
        with hw_collector(fake.url, "--interval", "0.3", "--sysfs-root", str(workdir), env=env) as collector:
            time.sleep(1.5)
            collector_page = httpx.get(collector.url + "/metrics").text
    return proxy_page, collector_page


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for key, value in sorted(labels.items()))


def write_openmetrics(path: Path, proxy_page: str, collector_page: str, hosts: int, minutes: float) -> int:
    """Every sample of both pages for every host and step; the number of series written."""
    now = int(time.time())
    steps = [now - STEP_S * index for index in range(int(minutes * 60 / STEP_S), -1, -1)]
    written = 0
    with path.open("w") as out:
        for page, job, port in ((proxy_page, "otel-proxy", 8001), (collector_page, "hw-collector", 8002)):
            for family in text_string_to_metric_families(page):
                growing = family.type in ("counter", "histogram", "summary")
                for sample in family.samples:
                    if sample.name.endswith("_created") or sample.value != sample.value:
                        continue
                    for host in range(hosts):
                        labels = _labels({**sample.labels, "job": job, "instance": f"host-{host}:{port}"})
                        head = f"{sample.name}{{{labels}}}"
                        for index, at in enumerate(steps):
                            value = sample.value * (index + 1) if growing else sample.value
                            out.write(f"{head} {value} {at}\n")
                        written += 1
        out.write("# EOF\n")
    return written


def refresh(prometheus_url: str) -> tuple[int, float, float, float]:
    """Prometheus calls, their total and median seconds, and the page run's wall time."""
    from streamlit.testing.v1 import AppTest

    os.environ.update(PROMETHEUS_URL=prometheus_url, PROXY_URL=f"http://127.0.0.1:{free_port()}", OLLAMA_URL=f"http://127.0.0.1:{free_port()}")
    calls.clear()
    started = time.perf_counter()
    app = AppTest.from_file(str(ROOT / "ui" / "streamlit_app.py"), default_timeout=120)
    app.run()
    wall = time.perf_counter() - started
    assert not app.exception, [e.message for e in app.exception]
    measured = list(calls)
    every_call.extend(measured)
    return len(measured), sum(t for _, t, _ in measured), statistics.median(t for _, t, _ in measured), wall


def measure(label: str, hosts: int, models: int, minutes: float, rounds: int) -> None:
    promtool, prometheus = require_tool("promtool"), require_tool("prometheus")
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        proxy_page, collector_page = pages(models, work)
        source = work / "fleet.om"
        started = time.perf_counter()
        series = write_openmetrics(source, proxy_page, collector_page, hosts, minutes)
        data = work / "data"
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)], check=True, capture_output=True)
        built = time.perf_counter() - started
        source.unlink()
        config = work / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\n")
        port = free_port()
        args = [prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=10y"]
        with run_server(args, port, "/-/ready", timeout=120) as server:
            refresh(server.url)  # warm: Prometheus' caches, Streamlit's imports
            results = []
            for _ in range(rounds):
                queries_cache_clear()
                results.append(refresh(server.url))
        shutil.rmtree(data, ignore_errors=True)
    count = results[0][0]
    in_prometheus = statistics.median(r[1] for r in results)
    wall = statistics.median(r[3] for r in results)
    print(f"| {label} | {hosts} | {models} | {series:,} | {built:.0f} | {count} | {in_prometheus * 1000:.0f} | "
          f"{statistics.median(r[2] for r in results) * 1000:.1f} | {wall * 1000:.0f} |", flush=True)


def queries_cache_clear() -> None:
    import streamlit as st

    st.cache_data.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slowest", type=int, default=0, help="also print the N slowest Prometheus calls of the fleet's refreshes")
    args = parser.parse_args()
    queries.Prometheus._get = counted  # type: ignore[method-assign]
    print(f"{args.minutes:g} minutes of samples every {STEP_S} s; medians of {args.rounds} refreshes, each with the page's caches cleared\n")
    print("| Prometheus | hosts | models | series | build (s) | Prometheus calls | in Prometheus (ms) | median call (ms) | page run (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    measure("one host", 1, 3, args.minutes, args.rounds)
    every_call.clear()
    measure("fleet", args.hosts, args.models, args.minutes, args.rounds)
    for path, seconds, query in sorted(every_call, key=lambda call: call[1], reverse=True)[: args.slowest]:
        print(f"{seconds * 1000:7.1f} ms {path} {query[:160]}")


if __name__ == "__main__":
    main()
