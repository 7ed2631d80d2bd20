"""A stand-in for nvidia-ml-py's pynvml with NVML's own units: mW, mJ, bytes, percent, Celsius.

Two devices, an H100 that reports everything and an older board whose energy counter is
not supported (NVML raises NVMLError_NotSupported, as real drivers do). Values can be
changed through ``DEVICES`` to test that readings follow them.

Memory as drivers report it: ``used`` is what nvidia-smi shows (nvmlDeviceGetMemoryInfo_v2,
driver-reserved memory apart); the old v1 query counts the reserved memory as used (an idle
H100 read 480 MiB used through v1 and 0 MiB in nvidia-smi). ``DRIVER_HAS_V2 = False`` plays
a driver without the v2 query (NVML answers Function Not Found).
"""

import os
from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0
nvmlMemory_v2 = 0x02000028
DRIVER_HAS_V2 = True


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_FunctionNotFound(NVMLError):
    pass


DEVICES = [
    {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-5a1f7c2e-0000-4d3c-9b8e-123456789abc", "util": 87, "used": 61_203_283_968,
     "reserved": 503_316_480, "total": 85_520_809_984, "power_mw": 412_345, "energy_mj": 987_654_321, "temp": 66},
    {"name": "Tesla T4", "uuid": "GPU-0b2e1d4f-1111-4aaa-8bbb-cccccccccccc", "util": 3, "used": 512_000_000,
     "reserved": 264_241_152, "total": 16_106_127_360, "power_mw": 27_500, "energy_mj": None, "temp": 41},
]
# STAND_IN_NVML_GPUS=N: N boards like the first (distinct ids), for a large host (bench/hw_collector_cost.py --gpus).
if os.environ.get("STAND_IN_NVML_GPUS"):
    DEVICES = [{**DEVICES[0], "uuid": f"GPU-5a1f7c2e-0000-4d3c-9b8e-{index:012x}", "power_mw": 400_000 + index} for index in range(int(os.environ["STAND_IN_NVML_GPUS"]))]
initialised = False


def nvmlInit():
    global initialised
    initialised = True


def nvmlShutdown():
    global initialised
    initialised = False


def nvmlDeviceGetCount():
    return len(DEVICES)


def nvmlDeviceGetHandleByIndex(index):
    return index


def nvmlDeviceGetName(handle):
    return DEVICES[handle]["name"]


def nvmlDeviceGetUUID(handle):
    return DEVICES[handle]["uuid"]


def nvmlDeviceGetUtilizationRates(handle):
    return SimpleNamespace(gpu=DEVICES[handle]["util"], memory=0)


def nvmlDeviceGetMemoryInfo(handle, version=None):
    device = DEVICES[handle]
    free = device["total"] - device["reserved"] - device["used"]
    if not version:
        return SimpleNamespace(total=device["total"], used=device["total"] - free, free=free)
    if not DRIVER_HAS_V2:
        raise NVMLError_FunctionNotFound("Function Not Found")
    return SimpleNamespace(version=version, total=device["total"], reserved=device["reserved"], free=free, used=device["used"])


def nvmlDeviceGetPowerUsage(handle):
    return DEVICES[handle]["power_mw"]


def nvmlDeviceGetTotalEnergyConsumption(handle):
    energy = DEVICES[handle]["energy_mj"]
    if energy is None:
        raise NVMLError_NotSupported("Not Supported")
    return energy


def nvmlDeviceGetTemperature(handle, sensor):
    return DEVICES[handle]["temp"]
