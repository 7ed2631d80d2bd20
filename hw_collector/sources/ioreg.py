"""Apple GPU utilisation from `ioreg` when macmon is absent ("Device Utilization %")."""

from __future__ import annotations

import re
import shutil
import subprocess

from hw_collector import instruments as m
from hw_collector.sources import Reading
from hw_collector.sources.macmon import MacmonSource

COMMAND = ["ioreg", "-r", "-d", "1", "-w", "0", "-c", "IOAccelerator"]
_UTILIZATION = re.compile(r'"Device Utilization %"\s*=\s*(\d+)')
_MODEL = re.compile(r'"model"\s*=\s*"([^"]+)"')
_CLASS = re.compile(r'"IOClass"\s*=\s*"([^"]+)"')


def parse(output: str) -> list[Reading]:
    readings = []
    for index, block in enumerate(part for part in re.split(r"(?m)^\+-o ", output) if "PerformanceStatistics" in part):
        utilization = _UTILIZATION.search(block)
        if utilization is None:
            continue
        name = _MODEL.search(block) or _CLASS.search(block)
        attributes = {"hw.id": f"gpu{index}", "hw.name": name.group(1) if name else "Apple GPU", "hw.vendor": "Apple", "hw.type": "gpu"}
        readings.append(Reading(m.GPU_UTILIZATION, int(utilization.group(1)) / 100, attributes))
    return readings


class IoregSource:
    name = "ioreg"

    def __init__(self, macmon: MacmonSource | None = None) -> None:
        self._macmon = macmon

    def available(self) -> str | None:
        if self._macmon is not None and self._macmon.running:
            return "macmon already measures the GPU"
        if shutil.which("ioreg") is None:
            return "ioreg not found (macOS only)"
        return None if parse(self._run()) else "ioreg lists no GPU with utilisation statistics"

    def _run(self) -> str:
        return subprocess.run(COMMAND, capture_output=True, text=True, timeout=5, check=True).stdout

    def read(self) -> list[Reading]:
        return parse(self._run())

    def close(self) -> None:
        pass
