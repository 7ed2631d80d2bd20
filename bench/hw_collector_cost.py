"""What the hardware collector costs: CPU per sample (and so per core at the default
interval) and the time a /metrics scrape takes.

    python bench/hw_collector_cost.py [--interval 1] [--seconds 30] [--scrapes 200]
    python bench/hw_collector_cost.py --gpus 8 --models 20    # a large host: the stand-in NVML, 20 resident models

The collector runs as a real process against the fake Ollama (so /api/ps is polled); the
CPU is the whole process's (sampler, event loop, everything) over the window, divided by
the number of samples taken: an upper bound for the sampler alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.harness import fake_ollama, hw_collector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=1.0, help="sampling interval for the measurement")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--gpus", type=int, help="NVIDIA boards from tests/support/stand_ins/pynvml.py (default: this machine's own sources)")
    parser.add_argument("--models", type=int, default=1, help="models Ollama holds")
    args = parser.parse_args()
    env = None
    if args.gpus:
        stand_ins = Path(__file__).resolve().parent.parent / "tests" / "support" / "stand_ins"
        env = {"PYTHONPATH": os.pathsep.join([str(stand_ins), str(stand_ins.parents[2])]), "STAND_IN_NVML_GPUS": str(args.gpus)}
    with fake_ollama() as fake, hw_collector(fake.url, "--interval", str(args.interval), env=env) as collector:
        names = ["llama3.2:1b"] + [f"resident-{index}:7b" for index in range(args.models - 1)]
        httpx.post(fake.url + "/fake/configure", json={"answers": {name: "ok" for name in names[1:]}})
        for name in names:
            httpx.post(fake.url + "/api/generate", json={"model": name, "prompt": "x", "stream": False}, timeout=30)
        process = psutil.Process(collector.process.pid)
        time.sleep(2 * args.interval)
        before = sum(process.cpu_times()[:2])
        time.sleep(args.seconds)
        cpu = sum(process.cpu_times()[:2]) - before
        samples = args.seconds / args.interval
        per_sample_ms = cpu / samples * 1000
        with httpx.Client() as client:
            timings = []
            for _ in range(args.scrapes):
                started = time.perf_counter()
                client.get(collector.url + "/metrics").raise_for_status()
                timings.append((time.perf_counter() - started) * 1000)
            page = client.get(collector.url + "/metrics").text
            size = len(page)
            series = sum(1 for line in page.splitlines() if line and not line.startswith("#"))
    timings.sort()
    print(f"CPU per sample: {per_sample_ms:.2f} ms ({cpu:.3f} s CPU over {args.seconds:.0f} s, {samples:.0f} samples)")
    print(f"at the default 5 s interval: {per_sample_ms / 5000 * 100:.3f} % of one core")
    print(f"/metrics scrape ({size} bytes, {series} series): p50 {statistics.median(timings):.2f} ms, p99 {timings[int(0.99 * (len(timings) - 1))]:.2f} ms, max {timings[-1]:.2f} ms")


if __name__ == "__main__":
    main()
