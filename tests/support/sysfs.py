"""Recorded sysfs and powercap trees (amdgpu, RAPL) written for the collector's sources."""

from __future__ import annotations

from pathlib import Path


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")



def amd_tree(root: Path, busy: int = 37) -> Path:
    device = root / "class" / "drm" / "card1" / "device"
    write(device / "vendor", "0x1002")
    write(device / "device", "0x744c")
    write(device / "product_name", "Radeon RX 7900 XTX")
    write(device / "gpu_busy_percent", str(busy))
    write(device / "mem_info_vram_used", "17179869184")
    write(device / "mem_info_vram_total", "25753026560")
    hwmon = device / "hwmon" / "hwmon4"
    write(hwmon / "power1_average", "287000000")  # µW
    write(hwmon / "temp1_input", "54000")  # m°C
    write(hwmon / "temp1_label", "edge")
    write(hwmon / "temp2_input", "71500")
    write(hwmon / "temp2_label", "junction")
    # An Intel iGPU beside it must be ignored.
    igpu = root / "class" / "drm" / "card0" / "device"
    write(igpu / "vendor", "0x8086")
    return root



def rapl_tree(root: Path, package_uj: int, dram_uj: int) -> Path:
    powercap = root / "class" / "powercap"
    for zone, name, energy in (("intel-rapl:0", "package-0", package_uj), ("intel-rapl:0:0", "core", 5), ("intel-rapl:0:2", "dram", dram_uj)):
        write(powercap / zone / "name", name)
        write(powercap / zone / "energy_uj", str(energy))
        write(powercap / zone / "max_energy_range_uj", "262143328850")
    return root
