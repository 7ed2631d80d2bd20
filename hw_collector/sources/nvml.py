"""NVIDIA GPUs through NVML (nvidia-ml-py): utilisation, memory, power (mW), energy (mJ), temperature."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from hw_collector import instruments as m
from hw_collector.sources import Reading

log = logging.getLogger(__name__)


class NvmlSource:
    name = "nvml"

    def __init__(self) -> None:
        self._nvml: ModuleType | None = None
        self._devices: list[tuple[Any, dict[str, str | int]]] = []
        self._memory_v2: int | None = None  # the v2 memory query's version tag, while the driver answers it

    def available(self) -> str | None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return "nvidia-ml-py is not installed (pip install 'ollama-otel-stack[nvidia]')"
        try:
            nvml.nvmlInit()
            count = nvml.nvmlDeviceGetCount()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            return f"no NVIDIA driver here ({exc})"
        if count == 0:
            return "NVML found no GPU"
        self._nvml = nvml
        self._memory_v2 = getattr(nvml, "nvmlMemory_v2", None)  # nvidia-ml-py >= 11.510
        for index in range(count):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(nvml.nvmlDeviceGetName(handle))
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            self._devices.append((handle, {"hw.id": uuid, "hw.name": name, "hw.vendor": "NVIDIA", "hw.type": "gpu"}))
        return None

    def read(self) -> list[Reading]:
        nvml = self._nvml
        assert nvml is not None
        readings: list[Reading] = []
        for handle, device in self._devices:
            # Each query may be unsupported on a given board: skip that quantity, keep the rest.
            utilization = _optional(nvml, lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            if utilization is not None:
                readings.append(Reading(m.GPU_UTILIZATION, utilization / 100, device))
            memory = _optional(nvml, lambda: self._memory(handle))
            if memory is not None:
                readings.append(Reading(m.GPU_MEMORY_USAGE, memory.used, device))
                readings.append(Reading(m.GPU_MEMORY_LIMIT, memory.total, device))
            milliwatts = _optional(nvml, lambda: nvml.nvmlDeviceGetPowerUsage(handle))
            if milliwatts is not None:
                readings.append(Reading(m.POWER, milliwatts / 1000, device))
            millijoules = _optional(nvml, lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            if millijoules is not None:
                readings.append(Reading(m.ENERGY, millijoules / 1000, device))
            celsius = _optional(nvml, lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            if celsius is not None:
                readings.append(Reading(m.TEMPERATURE, celsius, device))
        return readings

    def _memory(self, handle: Any) -> Any:
        """Memory as nvidia-smi reports it. The v1 query counts what the driver reserves for
        itself as used (480 MiB on an idle H100 with driver 580, where nvidia-smi shows 0);
        the v2 query (drivers >= 510) reports it apart, so ``used`` is what processes hold."""
        nvml = self._nvml
        assert nvml is not None
        if self._memory_v2 is not None:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(handle, version=self._memory_v2)
            except (TypeError, nvml.NVMLError) as exc:  # an older pynvml or driver: v1 from now on
                log.info("NVML has no v2 memory query here (%s): memory used includes driver-reserved memory", exc)
                self._memory_v2 = None
        return nvml.nvmlDeviceGetMemoryInfo(handle)

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _optional(nvml: ModuleType, query: Any) -> Any:
    try:
        return query()
    except nvml.NVMLError_NotSupported:
        return None
