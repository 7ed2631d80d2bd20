"""The hardware collector's NVIDIA readings side by side with nvidia-smi's, idle and under load.

    python bench/nvml_compare.py [--samples 5] [--load-seconds 25] [--load-gib 8]

Runs the collector as a real process (1 s interval, NVML source), then, for every GPU, reads
its /metrics and `nvidia-smi --query-gpu=utilization.gpu,memory.used,power.draw,temperature.gpu
--format=csv` at the same moment, first idle and then while a PyTorch process (when torch is
installed) holds --load-gib of GPU memory and multiplies matrices. The collector samples once
a second and nvidia-smi reads at once, so a reading may lag nvidia-smi's by up to a second.
Last, the energy counter's increase between two of the collector's samples (each caught as it
lands, by polling /metrics every 20 ms) is set against nvidia-smi's power draw, read once a
second in between, times the time between those samples.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.harness import PYTHON, hw_collector  # noqa: E402

SMI_FIELDS = "uuid,name,utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu"
LOAD = """
import sys, time, torch
seconds, gib = float(sys.argv[1]), float(sys.argv[2])
hold = torch.empty(int(gib * 2**30), dtype=torch.uint8, device="cuda")
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
print("loaded", flush=True)
end = time.time() + seconds
while time.time() < end:
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
"""


def smi() -> dict[str, dict[str, float | str]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits"], capture_output=True, text=True, check=True
    ).stdout
    readings = {}
    for line in out.strip().splitlines():
        uuid, name, util, used, total, power, temp = (part.strip() for part in line.split(","))
        readings[uuid] = {
            "name": name,
            "util": float(util) / 100,
            "used": float(used) * 2**20,
            "total": float(total) * 2**20,
            "power": float(power),
            "temp": float(temp),
        }
    return readings


def collector_readings(url: str) -> dict[str, dict[str, float]]:
    names = {
        "hw_gpu_utilization": "util",
        "hw_gpu_memory_usage_bytes": "used",
        "hw_gpu_memory_limit_bytes": "total",
        "hw_power_watts": "power",
        "hw_temperature_celsius": "temp",
        "hw_energy_joules": "energy",  # the parser names the family without _total
    }
    readings: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            key = names.get(sample.name.removesuffix("_total"))
            if key and sample.labels.get("hw_type") == "gpu":
                readings.setdefault(sample.labels["hw_id"], {})[key] = sample.value
    return readings


def compare(label: str, url: str) -> None:
    ours, theirs = collector_readings(url), smi()
    for uuid, smi_reading in theirs.items():
        reading = ours.get(uuid, {})

        def show(key: str, scale: float, unit: str) -> str:
            value = reading.get(key)
            mine = "no series" if value is None else f"{value / scale:.1f}"
            return f"{mine} vs {smi_reading[key] / scale:.1f} {unit}"

        print(
            f"{label:>5} {uuid[:12]}  util {show('util', 0.01, '%')} | mem used {show('used', 2**20, 'MiB')}"
            f" | total {show('total', 2**20, 'MiB')} | power {show('power', 1, 'W')} | temp {show('temp', 1, 'C')}"
            f" | energy {reading.get('energy', float('nan')):.1f} J"
        )


def fresh_sample(url: str) -> tuple[dict[str, dict[str, float]], float] | None:
    """The collector's readings just after a sample lands (its energy readings change), and
    when; None if they do not change within 5 s (no energy counter on these boards)."""
    energies = {uuid: reading.get("energy") for uuid, reading in collector_readings(url).items()}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.02)
        readings = collector_readings(url)
        if {uuid: reading.get("energy") for uuid, reading in readings.items()} != energies:
            return readings, time.monotonic()
    return None


@contextmanager
def gpu_load(seconds: float, gib: float) -> Iterator[None]:
    process = subprocess.Popen([PYTHON, "-c", LOAD, str(seconds), str(gib)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        print("load:", process.stdout.readline().strip())
        yield
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--load-seconds", type=float, default=25.0)
    parser.add_argument("--load-gib", type=float, default=8.0)
    args = parser.parse_args()
    if shutil.which("nvidia-smi") is None:
        raise SystemExit("nvidia-smi is not on the PATH: this comparison needs an NVIDIA GPU and its driver")
    print(subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip())
    # Ollama is not running here: port 9 (discard) refuses, so the ollama source reports down.
    with hw_collector("http://127.0.0.1:9", "--interval", "1") as collector:
        time.sleep(2.5)
        for _ in range(2):
            compare("idle", collector.url)
            time.sleep(1)
        if importlib.util.find_spec("torch") is None:
            print("torch is not installed: no load phase")
            return
        with gpu_load(args.load_seconds, args.load_gib):
            time.sleep(3)
            for _ in range(args.samples):
                compare("load", collector.url)
                time.sleep(1)
            start = fresh_sample(collector.url)
            powers = []
            for _ in range(args.samples):
                time.sleep(1)
                powers.append({uuid: reading["power"] for uuid, reading in smi().items()})
            end = fresh_sample(collector.url)
        if start is None or end is None:
            print("energy: the counter did not move (not supported on these boards)")
            return
        (first, started), (last, ended) = start, end
        elapsed = ended - started
        for uuid in sorted(last.keys() & powers[0].keys()):  # the GPUs both see
            gained = last[uuid].get("energy", float("nan")) - first[uuid].get("energy", float("nan"))
            integrated = sum(power[uuid] for power in powers) / len(powers) * elapsed
            print(f"energy {uuid[:12]}: counter +{gained:.0f} J in {elapsed:.2f} s between two samples;"
                  f" nvidia-smi's power x time {integrated:.0f} J ({gained / integrated - 1:+.1%})")
        print("source up:", [line for line in httpx.get(collector.url + "/metrics").text.splitlines() if line.startswith("hw_collector_source_up")])


if __name__ == "__main__":
    main()
