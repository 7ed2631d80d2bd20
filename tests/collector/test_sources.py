"""Every hardware source against recorded outputs: sysfs and powercap trees, NVML's units,
macmon lines in both layouts, ioreg output, and the fake Ollama's /api/ps."""

from __future__ import annotations

import logging
import re
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from hw_collector import instruments as m
from hw_collector.sampler import Sampler
from hw_collector.sources import EnergyIntegrator, Reading
from hw_collector.sources.amd_sysfs import AmdSysfsSource
from hw_collector.sources.ioreg import parse as parse_ioreg
from hw_collector.sources.macmon import MacmonSource, parse_line
from hw_collector.sources.nvml import NvmlSource
from hw_collector.sources.ollama_ps import OllamaSource
from ollama_otel_stack.go_time import unix_seconds
from hw_collector.sources.rapl import GRANT_ACCESS, RaplSource
from tests.support.harness import PYTHON, ROOT, require_tool
from tests.support.sysfs import amd_tree, rapl_tree, write

DATA = ROOT / "tests" / "support" / "data"
STAND_INS = ROOT / "tests" / "support" / "stand_ins"


def values(readings: list[Reading], metric: str, **attributes: object) -> list[float]:
    return [r.value for r in readings if r.metric == metric and all(r.attributes.get(k) == v for k, v in attributes.items())]


def test_amd_sysfs_reads_the_driver_units(tmp_path):
    source = AmdSysfsSource(str(amd_tree(tmp_path)))
    assert source.available() is None
    readings = source.read()
    gpu = {"hw.id": "card1", "hw.vendor": "AMD", "hw.name": "Radeon RX 7900 XTX"}
    assert values(readings, m.GPU_UTILIZATION, **gpu) == [0.37]
    assert values(readings, m.GPU_MEMORY_USAGE, **gpu) == [17179869184]
    assert values(readings, m.GPU_MEMORY_LIMIT, **gpu) == [25753026560]
    assert values(readings, m.POWER, **gpu) == [287.0]
    assert values(readings, m.TEMPERATURE, **{"hw.sensor_location": "edge"}) == [54.0]
    assert values(readings, m.TEMPERATURE, **{"hw.sensor_location": "junction"}) == [71.5]
    assert values(readings, m.ENERGY) == [0.0]  # integration starts at the first sample
    assert len(values(readings, m.GPU_UTILIZATION)) == 1  # the Intel card is not measured


def test_amd_sysfs_is_off_without_an_amd_card(tmp_path):
    write(tmp_path / "class" / "drm" / "card0" / "device" / "vendor", "0x10de")
    assert "no amdgpu device" in AmdSysfsSource(str(tmp_path)).available()


def test_energy_is_integrated_from_power():
    energy = EnergyIntegrator()
    assert energy.add("gpu", 100.0, now=10.0) == 0.0
    assert energy.add("gpu", 300.0, now=12.0) == 400.0  # 2 s at a mean of 200 W
    assert energy.add("gpu", 300.0, now=13.0) == 700.0


def test_rapl_turns_energy_counters_into_power_and_handles_wrap_around(tmp_path):
    root = rapl_tree(tmp_path, package_uj=262143000000, dram_uj=1_000_000)
    source = RaplSource(str(root))
    assert source.available() is None
    assert source.read() == []  # the first sample only sets the baseline
    time.sleep(0.2)
    # package wrapped: 262143000000 -> 262143328850 (max) -> 671150; dram moved 2 J
    rapl_tree(tmp_path, package_uj=671150, dram_uj=3_000_000)
    readings = source.read()
    package = {"hw.type": "cpu", "hw.name": "package-0", "hw.id": "intel-rapl:0"}
    assert values(readings, m.ENERGY, **package) == [pytest.approx(1.0)]
    assert values(readings, m.ENERGY, **{"hw.type": "dram"}) == [pytest.approx(2.0)]
    assert 3.0 < values(readings, m.POWER, **package)[0] < 5.5  # 1 J over a little more than 0.2 s
    assert values(readings, m.POWER, **{"hw.name": "core"}) == []  # sub-zones would count twice


def test_rapl_permission_denied_turns_the_source_off_and_says_how_to_grant_access():
    # energy_uj readable by nobody, as on kernels 5.10+ for every user but root. Root reads any
    # file, so as root the probe runs without the capabilities that override file permissions
    # (still uid 0, so it reaches a checkout in a 0700 home directory and its virtualenv).
    with tempfile.TemporaryDirectory() as directory:
        root = rapl_tree(Path(directory), 1, 1)
        (root / "class" / "powercap" / "intel-rapl:0" / "energy_uj").chmod(0o000)
        probe = f"from hw_collector.sources.rapl import RaplSource; print(RaplSource({str(root)!r}).available())"
        drop = []
        if os.geteuid() == 0:
            drop = [require_tool("setpriv"), "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]
        result = subprocess.run([*drop, PYTHON, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == GRANT_ACCESS, result.stderr


def test_nvml_reads_milliwatts_millijoules_and_bytes(monkeypatch):
    monkeypatch.syspath_prepend(str(STAND_INS))
    sys.modules.pop("pynvml", None)
    source = NvmlSource()
    assert source.available() is None
    readings = source.read()
    h100 = {"hw.name": "NVIDIA H100 80GB HBM3", "hw.vendor": "NVIDIA", "hw.id": "GPU-5a1f7c2e-0000-4d3c-9b8e-123456789abc"}
    assert values(readings, m.GPU_UTILIZATION, **h100) == [0.87]
    assert values(readings, m.GPU_MEMORY_USAGE, **h100) == [61_203_283_968]  # v2: driver-reserved memory apart, as nvidia-smi
    assert values(readings, m.GPU_MEMORY_LIMIT, **h100) == [85_520_809_984]
    assert values(readings, m.POWER, **h100) == [412.345]
    assert values(readings, m.ENERGY, **h100) == [987_654.321]
    assert values(readings, m.TEMPERATURE, **h100) == [66]
    t4 = {"hw.name": "Tesla T4"}
    assert values(readings, m.POWER, **t4) == [27.5]
    assert values(readings, m.ENERGY, **t4) == []  # not supported on that board: no series, not zero
    sys.modules.pop("pynvml", None)


@pytest.mark.parametrize("missing", ["driver", "library"])
def test_nvml_memory_falls_back_to_the_v1_query(monkeypatch, missing):
    """Without the v2 query (a driver before 510, or an nvidia-ml-py before 11.510) memory
    comes from v1, whose "used" counts driver-reserved memory; the other readings are unchanged."""
    monkeypatch.syspath_prepend(str(STAND_INS))
    sys.modules.pop("pynvml", None)
    import pynvml

    if missing == "driver":
        monkeypatch.setattr(pynvml, "DRIVER_HAS_V2", False)
    else:
        monkeypatch.delattr(pynvml, "nvmlMemory_v2")
    source = NvmlSource()
    assert source.available() is None
    h100 = {"hw.name": "NVIDIA H100 80GB HBM3"}
    for _ in range(2):  # the fallback holds on later reads
        readings = source.read()
        assert values(readings, m.GPU_MEMORY_USAGE, **h100) == [61_203_283_968 + 503_316_480]
        assert values(readings, m.GPU_MEMORY_LIMIT, **h100) == [85_520_809_984]
        assert values(readings, m.POWER, **h100) == [412.345]
    sys.modules.pop("pynvml", None)


def test_nvml_is_off_without_the_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert "not installed" in NvmlSource().available()


@pytest.mark.parametrize(
    ("recording", "gpu_ratio", "powers"),
    [
        ("macmon-0.7.jsonl", 0.8512, {"cpu": 3.214, "gpu": 14.872, "ane": 0.0, "dram": 1.102}),  # sys_power 0.0: no sensor
        ("macmon-0.8.jsonl", 0.7731, {"cpu": 2.118, "gpu": 7.294, "ane": 0.0, "dram": 1.624, "system": 21.87}),
    ],
)
def test_macmon_lines_in_both_layouts(recording, gpu_ratio, powers):
    readings = parse_line((DATA / recording).read_text(), EnergyIntegrator(), now=0.0)
    assert values(readings, m.GPU_UTILIZATION) == [gpu_ratio]
    assert {r.attributes["hw.type"]: r.value for r in readings if r.metric == m.POWER} == powers
    temperatures = {r.attributes["hw.sensor_location"]: r.value for r in readings if r.metric == m.TEMPERATURE}
    assert set(temperatures) == {"cpu_temp_avg", "gpu_temp_avg"}


def test_macmon_runs_as_a_long_lived_subprocess(monkeypatch):
    monkeypatch.setenv("PATH", f"{DATA}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MACMON_RECORDING", str(DATA / "macmon-0.8.jsonl"))
    source = MacmonSource("macmon", interval_s=0.1)
    assert source.available() is None
    try:
        deadline = time.monotonic() + 5
        while not source.read():
            assert time.monotonic() < deadline, "no line from macmon"
            time.sleep(0.05)
        time.sleep(0.3)
        readings = source.read()
        assert values(readings, m.GPU_UTILIZATION) == [0.7731]
        gpu_energy = values(readings, m.ENERGY, **{"hw.type": "gpu"})[0]
        assert gpu_energy > 0  # integrated over the lines seen so far at 7.294 W
        assert source.running
    finally:
        source.close()
    time.sleep(0.2)
    with pytest.raises(RuntimeError, match="exited"):
        source.read()


def test_ioreg_device_utilization():
    readings = parse_ioreg((DATA / "ioreg-accelerator.txt").read_text())
    assert [(r.value, r.attributes["hw.name"]) for r in readings] == [(0.42, "Apple M2 Pro")]


def test_ollama_ps_from_the_fake_ollama(fake):
    httpx.post(fake.url + "/api/generate", json={"model": "qwen2.5:7b", "prompt": "x", "stream": False}, timeout=30)
    listed = httpx.get(fake.url + "/api/ps").json()["models"]
    readings = OllamaSource(fake.url, timeout_s=2).read()
    assert values(readings, m.OLLAMA_UP, **{"ollama.version": "0.32.15"}) == [1]
    assert values(readings, m.LOADED_MODELS) == [len(listed)]
    for model in listed:
        assert values(readings, m.LOADED_MODEL_SIZE, model=model["name"]) == [model["size"]]
        assert values(readings, m.LOADED_MODEL_VRAM, model=model["name"]) == [model["size_vram"]]
        expiry = unix_seconds(model["expires_at"])  # None while a runner has not gone idle: no series then
        assert values(readings, m.LOADED_MODEL_EXPIRY, model=model["name"]) == ([] if expiry is None else [pytest.approx(expiry)])


def test_go_timestamps_with_nanoseconds_and_offsets():
    assert unix_seconds("2024-06-04T14:38:31.837531234-07:00") == pytest.approx(1717537111.837531)
    assert unix_seconds("2026-11-27T20:00:00Z") == 1795809600.0
    assert unix_seconds("not a time") is None
    assert unix_seconds("0001-01-01T00:00:00Z") is None  # Go's zero time: a runner not yet idle has no expiry


class Flaky:
    name = "flaky"

    def __init__(self) -> None:
        self.failing = False

    def available(self) -> str | None:
        return None

    def read(self) -> list[Reading]:
        if self.failing:
            raise OSError("device went away")
        return [Reading(m.POWER, 42.0, {"hw.type": "gpu"})]

    def close(self) -> None:
        pass


class Steady(Flaky):
    name = "steady"

    def read(self) -> list[Reading]:
        return [Reading(m.MEMORY_LIMIT, 1024, {})]


class Absent(Flaky):
    name = "absent"

    def available(self) -> str | None:
        return "not on this machine"


def test_a_failing_source_stops_its_series_logs_once_and_the_others_carry_on(caplog):
    flaky = Flaky()
    sampler = Sampler([flaky, Steady(), Absent()], interval_s=3600)
    sampler.start()
    try:
        assert sampler.snapshot()[m.POWER] == [(42.0, {"hw.type": "gpu"})]
        flaky.failing = True
        with caplog.at_level(logging.WARNING):
            sampler.sample()
            sampler.sample()
        assert m.POWER not in sampler.snapshot()
        assert sampler.snapshot()[m.MEMORY_LIMIT] == [(1024, {})]
        assert [r.getMessage() for r in caplog.records].count("source flaky failed, its series stop until it recovers: device went away") == 1
        up = {attributes["source"]: value for value, attributes in sampler.snapshot()[m.SOURCE_UP]}
        assert up == {"flaky": 0, "steady": 1, "absent": 0}
        flaky.failing = False
        sampler.sample()
        assert sampler.snapshot()[m.POWER] == [(42.0, {"hw.type": "gpu"})]
    finally:
        sampler.stop()


def test_the_catalogue_names_what_each_source_measures_as_its_code_does():
    """hw_collector/instruments.py SOURCES, which the page reads (GPU and power sources), against each source's own readings."""
    sources = ROOT / "hw_collector" / "sources"
    for path in sorted(sources.glob("*.py")):
        code = path.read_text()
        name = re.search(r'^    name = "(\w+)"', code, re.M)
        if name is None:
            continue
        read = {getattr(m, constant) for constant in re.findall(r"\bm\.([A-Z_]+)\b", code)}
        assert set(m.SOURCES[name.group(1)]) == read, path.name
    assert m.sources_measuring(m.GPU_UTILIZATION) == ("nvml", "amd_sysfs", "macmon", "ioreg")
    assert m.sources_measuring(m.POWER) == ("nvml", "amd_sysfs", "rapl", "macmon")
