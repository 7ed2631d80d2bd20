"""AMD GPUs through the amdgpu driver's sysfs files; energy integrated from power."""

from __future__ import annotations

from pathlib import Path

from hw_collector import instruments as m
from hw_collector.sources import EnergyIntegrator, Reading

AMD_VENDOR = "0x1002"


class AmdSysfsSource:
    name = "amd_sysfs"

    def __init__(self, sysfs_root: str) -> None:
        self._drm = Path(sysfs_root) / "class" / "drm"
        self._cards: list[tuple[Path, dict[str, str | int]]] = []
        self._energy = EnergyIntegrator()

    def available(self) -> str | None:
        for card in sorted(self._drm.glob("card[0-9]*")):
            device = card / "device"
            if not (device / "gpu_busy_percent").exists():
                continue
            vendor = _read(device / "vendor")
            if vendor != AMD_VENDOR:
                continue
            name = _read(device / "product_name") or f"AMD GPU {_read(device / 'device') or ''}".strip()
            self._cards.append((device, {"hw.id": card.name, "hw.name": name, "hw.vendor": "AMD", "hw.type": "gpu"}))
        return None if self._cards else "no amdgpu device in " + str(self._drm)

    def read(self) -> list[Reading]:
        readings: list[Reading] = []
        for device, attributes in self._cards:
            busy = _read(device / "gpu_busy_percent")
            if busy is None:
                raise OSError(f"{device / 'gpu_busy_percent'} is no longer readable")
            readings.append(Reading(m.GPU_UTILIZATION, int(busy) / 100, attributes))
            used, total = _read(device / "mem_info_vram_used"), _read(device / "mem_info_vram_total")
            if used is not None and total is not None:
                readings.append(Reading(m.GPU_MEMORY_USAGE, int(used), attributes))
                readings.append(Reading(m.GPU_MEMORY_LIMIT, int(total), attributes))
            for hwmon in sorted((device / "hwmon").glob("hwmon*")):
                microwatts = _read(hwmon / "power1_average") or _read(hwmon / "power1_input")
                if microwatts is not None:
                    watts = int(microwatts) / 1e6
                    readings.append(Reading(m.POWER, watts, attributes))
                    readings.append(Reading(m.ENERGY, self._energy.add(str(device), watts), attributes))
                for temperature in sorted(hwmon.glob("temp*_input")):
                    label = _read(temperature.with_name(temperature.name.replace("_input", "_label"))) or temperature.name
                    millicelsius = _read(temperature)
                    if millicelsius is not None:
                        readings.append(Reading(m.TEMPERATURE, int(millicelsius) / 1000, {**attributes, "hw.sensor_location": label}))
        return readings

    def close(self) -> None:
        pass


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
