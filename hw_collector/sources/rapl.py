"""CPU package and DRAM energy from Linux RAPL powercap: energy_uj counters, power from their change."""

from __future__ import annotations

import time
from pathlib import Path

from hw_collector import instruments as m
from hw_collector.sources import Reading

GRANT_ACCESS = (
    "energy_uj is readable only by root on kernels >= 5.10; run the collector as root, or grant "
    "read access: sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "(a udev rule keeps it across reboots)"
)


class _Zone:
    def __init__(self, path: Path, kind: str, name: str) -> None:
        self.path = path
        self.attributes: dict[str, str | int] = {"hw.id": path.name, "hw.name": name, "hw.type": kind}
        self.max_range = int((path / "max_energy_range_uj").read_text())
        self.last_uj: int | None = None
        self.last_at = 0.0
        self.joules = 0.0


class RaplSource:
    name = "rapl"

    def __init__(self, sysfs_root: str) -> None:
        self._powercap = Path(sysfs_root) / "class" / "powercap"
        self._zones: list[_Zone] = []

    def available(self) -> str | None:
        zones = sorted(self._powercap.glob("intel-rapl:*"))
        if not zones:
            return "no RAPL powercap zones in " + str(self._powercap)
        for path in zones:
            name = (path / "name").read_text().strip()
            # package-N is the whole socket; its core/uncore sub-zones would count twice.
            kind = "cpu" if name.startswith("package") else "dram" if name == "dram" else None
            if kind is None:
                continue
            try:
                (path / "energy_uj").read_text()
            except PermissionError:
                return GRANT_ACCESS
            self._zones.append(_Zone(path, kind, name))
        return None if self._zones else "no package or dram RAPL zone in " + str(self._powercap)

    def read(self) -> list[Reading]:
        readings: list[Reading] = []
        now = time.monotonic()
        for zone in self._zones:
            microjoules = int((zone.path / "energy_uj").read_text())
            if zone.last_uj is not None:
                delta = microjoules - zone.last_uj
                if delta < 0:  # the counter wrapped at max_energy_range_uj
                    delta += zone.max_range
                zone.joules += delta / 1e6
                readings.append(Reading(m.POWER, delta / 1e6 / (now - zone.last_at), zone.attributes))
                readings.append(Reading(m.ENERGY, zone.joules, zone.attributes))
            zone.last_uj, zone.last_at = microjoules, now
        return readings

    def close(self) -> None:
        pass
