"""Apple Silicon without sudo: `macmon pipe` (IOReport and SMC) as a long-lived subprocess.

Both JSON layouts are read: 0.7 (``gpu_usage: [MHz, ratio]``) and 0.8 and later, which add
``gpu_active_ratio`` (time the GPU was active: preferred, as Activity Monitor shows it) and
``gpu_freq_mhz``. Energy is integrated from the reported power.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
from typing import Any

from hw_collector import instruments as m
from hw_collector.sources import EnergyIntegrator, Reading

log = logging.getLogger(__name__)

GPU = {"hw.id": "gpu0", "hw.name": "Apple GPU", "hw.vendor": "Apple", "hw.type": "gpu"}
POWER_FIELDS = {"cpu_power": "cpu", "gpu_power": "gpu", "ane_power": "ane", "ram_power": "dram", "sys_power": "system"}


def parse_line(line: str, energy: EnergyIntegrator, now: float) -> list[Reading]:
    """The readings in one line of `macmon pipe` output (either layout)."""
    sample: dict[str, Any] = json.loads(line)
    readings: list[Reading] = []
    ratio = sample.get("gpu_active_ratio")
    if ratio is None and isinstance(sample.get("gpu_usage"), list) and len(sample["gpu_usage"]) == 2:
        ratio = sample["gpu_usage"][1]
    if isinstance(ratio, (int, float)):
        readings.append(Reading(m.GPU_UTILIZATION, float(ratio), GPU))
    for field, kind in POWER_FIELDS.items():
        watts = sample.get(field)
        if not isinstance(watts, (int, float)) or (field == "sys_power" and watts == 0):
            continue  # machines without a system power sensor report 0.0: no reading, not zero
        attributes = GPU if kind == "gpu" else {"hw.id": kind, "hw.name": f"Apple {kind.upper()}", "hw.vendor": "Apple", "hw.type": kind}
        readings.append(Reading(m.POWER, float(watts), attributes))
        readings.append(Reading(m.ENERGY, energy.add(kind, float(watts), now), attributes))
    temperatures = sample.get("temp") or {}
    for field, kind in (("cpu_temp_avg", "cpu"), ("gpu_temp_avg", "gpu")):
        celsius = temperatures.get(field)
        if isinstance(celsius, (int, float)) and celsius > 0:
            attributes = GPU if kind == "gpu" else {"hw.id": "cpu", "hw.name": "Apple CPU", "hw.vendor": "Apple", "hw.type": "cpu"}
            readings.append(Reading(m.TEMPERATURE, float(celsius), {**attributes, "hw.sensor_location": field}))
    return readings


class MacmonSource:
    name = "macmon"

    def __init__(self, binary: str, interval_s: float) -> None:
        self._binary = binary
        self._interval_ms = max(100, int(interval_s * 1000))
        self._latest: list[Reading] = []
        self._latest_at = 0.0
        self._process: subprocess.Popen[str] | None = None
        self._energy = EnergyIntegrator()
        self._lock = threading.Lock()

    def available(self) -> str | None:
        path = shutil.which(self._binary)
        if path is None:
            return f"{self._binary} not found (on Apple Silicon: brew install macmon)"
        self._process = subprocess.Popen([path, "pipe", "-i", str(self._interval_ms)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._follow, name="macmon-reader", daemon=True).start()
        return None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _follow(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                readings = parse_line(line, self._energy, time.monotonic())
            except (ValueError, TypeError, AttributeError) as exc:
                log.warning("macmon: skipped a line that is not its JSON (%s)", exc)
                continue
            with self._lock:
                self._latest, self._latest_at = readings, time.monotonic()

    def read(self) -> list[Reading]:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"macmon exited with status {self._process.returncode}")
        with self._lock:
            if self._latest_at and time.monotonic() - self._latest_at > 3 * self._interval_ms / 1000 + 5:
                raise RuntimeError("macmon has sent nothing for several intervals")
            return list(self._latest)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
