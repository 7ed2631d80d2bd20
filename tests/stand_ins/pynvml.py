"""A stand-in for nvidia-ml-py's pynvml with NVML's own units: mW, mJ, bytes, percent, Celsius.

Two devices, an H100 that reports everything and an older board whose energy counter is
not supported (NVML raises NVMLError_NotSupported, as real drivers do). Values can be
changed through ``DEVICES`` to test that readings follow them.
"""

from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


DEVICES = [
    {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-5a1f7c2e-0000-4d3c-9b8e-123456789abc", "util": 87, "used": 61_203_283_968,
     "total": 85_520_809_984, "power_mw": 412_345, "energy_mj": 987_654_321, "temp": 66},
    {"name": "Tesla T4", "uuid": "GPU-0b2e1d4f-1111-4aaa-8bbb-cccccccccccc", "util": 3, "used": 512_000_000,
     "total": 16_106_127_360, "power_mw": 27_500, "energy_mj": None, "temp": 41},
]
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


def nvmlDeviceGetMemoryInfo(handle):
    device = DEVICES[handle]
    return SimpleNamespace(total=device["total"], used=device["used"], free=device["total"] - device["used"])


def nvmlDeviceGetPowerUsage(handle):
    return DEVICES[handle]["power_mw"]


def nvmlDeviceGetTotalEnergyConsumption(handle):
    energy = DEVICES[handle]["energy_mj"]
    if energy is None:
        raise NVMLError_NotSupported("Not Supported")
    return energy


def nvmlDeviceGetTemperature(handle, sensor):
    return DEVICES[handle]["temp"]
