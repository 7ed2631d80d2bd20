"""The hardware collector's metric catalogue: every instrument, its unit and description.

All are observable: their callbacks read the sampler's latest snapshot and never block.
Names follow the OpenTelemetry semantic conventions for system, process and hardware
metrics; docs/metrics.md lists them under their Prometheus names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Meter, Observation

CPU_UTILIZATION = "system.cpu.utilization"
MEMORY_USAGE = "system.memory.usage"
MEMORY_LIMIT = "system.memory.limit"
MEMORY_UTILIZATION = "system.memory.utilization"
PAGING_USAGE = "system.paging.usage"
PAGING_UTILIZATION = "system.paging.utilization"
PROCESS_CPU_UTILIZATION = "process.cpu.utilization"
PROCESS_MEMORY_USAGE = "process.memory.usage"
GPU_UTILIZATION = "hw.gpu.utilization"
GPU_MEMORY_USAGE = "hw.gpu.memory.usage"
GPU_MEMORY_LIMIT = "hw.gpu.memory.limit"
TEMPERATURE = "hw.temperature"
POWER = "hw.power"
ENERGY = "hw.energy"
LOADED_MODEL_SIZE = "ollama.loaded_model.size"
LOADED_MODEL_VRAM = "ollama.loaded_model.vram"
LOADED_MODEL_EXPIRY = "ollama.loaded_model.expiry"
LOADED_MODELS = "ollama.loaded_models"
OLLAMA_UP = "ollama.up"
SOURCE_UP = "hw_collector.source.up"
LOG_LINES = "ollama.log.lines"
SERVER_REQUESTS = "ollama.server.requests"
PROMPT_TRUNCATIONS = "ollama.prompt.truncations"
TRUNCATED_TOKENS = "ollama.prompt.truncated_tokens"
SERVER_NUM_PARALLEL = "ollama.server.num_parallel"
RUNNER_INFO = "ollama.runner.info"
LIVE_REQUESTS = "ollama.live.requests"
PROMPT_STALLED = "ollama.live.prompt_stalled"


@dataclass(frozen=True)
class Spec:
    name: str
    unit: str
    description: str
    counter: bool = False  # an observable counter (monotonic total) rather than a gauge


CATALOGUE = (
    Spec(CPU_UTILIZATION, "1", "CPU busy fraction, 0..1: overall, and per logical CPU (cpu.logical_number)."),
    Spec(MEMORY_USAGE, "By", "Host memory in bytes by system.memory.state (used, free, cached, buffers)."),
    Spec(MEMORY_LIMIT, "By", "Total host memory in bytes."),
    Spec(MEMORY_UTILIZATION, "1", "Used host memory as a fraction of the total, 0..1."),
    Spec(PAGING_USAGE, "By", "Swap in bytes by system.paging.state (used, free)."),
    Spec(PAGING_UTILIZATION, "1", "Used swap as a fraction of the total, 0..1."),
    Spec(PROCESS_CPU_UTILIZATION, "1", "CPU used by the Ollama process tree (serve and runners), as a fraction of all CPUs."),
    Spec(PROCESS_MEMORY_USAGE, "By", "Resident memory of the Ollama process tree in bytes."),
    Spec(GPU_UTILIZATION, "1", "GPU busy fraction, 0..1, per device (NVML, amdgpu sysfs, macmon or ioreg)."),
    Spec(GPU_MEMORY_USAGE, "By", "GPU memory in use, bytes, per device."),
    Spec(GPU_MEMORY_LIMIT, "By", "GPU memory size, bytes, per device."),
    Spec(TEMPERATURE, "Cel", "Temperature in degrees Celsius, per GPU and per host sensor (hw.sensor_location)."),
    Spec(POWER, "W", "Power draw in watts, by hw.type (gpu, cpu, dram, ane, system)."),
    Spec(ENERGY, "J", "Energy used in joules since the collector (or, for NVML, the driver) started, by hw.type.", counter=True),
    Spec(LOADED_MODEL_SIZE, "By", "Size of each model Ollama has loaded (/api/ps size), by model."),
    Spec(LOADED_MODEL_VRAM, "By", "GPU memory each loaded model occupies (/api/ps size_vram), by model."),
    Spec(LOADED_MODEL_EXPIRY, "s", "When Ollama will unload each model, unix seconds (/api/ps expires_at)."),
    Spec(LOADED_MODELS, "{model}", "Models Ollama has loaded now."),
    Spec(OLLAMA_UP, "1", "1 when Ollama answered the last /api/ps, else 0; ollama.version names its version."),
    Spec(SOURCE_UP, "1", "1 for each measurement source active on this machine, 0 for one unavailable or failing."),
    Spec(LOG_LINES, "{line}", "Lines of Ollama's server log read, by parsed (true: a shape this collector knows; false: unknown, a format changed).", counter=True),
    Spec(SERVER_REQUESTS, "{request}", "Requests Ollama served, from its own access log (Gin), by route and status: through the proxy or not.", counter=True),
    Spec(PROMPT_TRUNCATIONS, "{prompt}", "Prompts Ollama cut to fit the runner's context (its 'truncating input prompt' warning), by model where known.", counter=True),
    Spec(TRUNCATED_TOKENS, "{token}", "Tokens of the prompts Ollama cut, by model where known, and by ollama.tokens: prompt (their length as sent) or cut (what it dropped).", counter=True),
    Spec(SERVER_NUM_PARALLEL, "{slot}", "OLLAMA_NUM_PARALLEL as Ollama started with it (its 'server config' line): the slots a runner is asked for."),
    Spec(RUNNER_INFO, "1", "1 for each llama-server runner Ollama started, with its real settings from the command line it logged."),
    Spec(LIVE_REQUESTS, "{request}", "Requests on a runner's slot now, by phase (reading the prompt, generating), from Ollama's log."),
    Spec(PROMPT_STALLED, "s", "The longest any prompt being read now has gone without a line of progress (absent when none is read)."),
)

# What each source (hw_collector/sources/, by its name) measures: the page tells "no GPU source on this host" from
# "a GPU source is active, no reading yet" with this, and tests/collector/test_sources.py holds it to the sources' code.
SOURCES: dict[str, tuple[str, ...]] = {
    "psutil": (CPU_UTILIZATION, MEMORY_USAGE, MEMORY_LIMIT, MEMORY_UTILIZATION, PAGING_USAGE, PAGING_UTILIZATION,
               PROCESS_CPU_UTILIZATION, PROCESS_MEMORY_USAGE, TEMPERATURE),
    "nvml": (GPU_UTILIZATION, GPU_MEMORY_USAGE, GPU_MEMORY_LIMIT, TEMPERATURE, POWER, ENERGY),
    "amd_sysfs": (GPU_UTILIZATION, GPU_MEMORY_USAGE, GPU_MEMORY_LIMIT, TEMPERATURE, POWER, ENERGY),
    "rapl": (POWER, ENERGY),
    "macmon": (GPU_UTILIZATION, TEMPERATURE, POWER, ENERGY),
    "ioreg": (GPU_UTILIZATION,),
    "ollama": (OLLAMA_UP, LOADED_MODELS, LOADED_MODEL_SIZE, LOADED_MODEL_VRAM, LOADED_MODEL_EXPIRY),
    "ollama_log": (LOG_LINES, SERVER_REQUESTS, PROMPT_TRUNCATIONS, TRUNCATED_TOKENS, SERVER_NUM_PARALLEL, RUNNER_INFO, LIVE_REQUESTS, PROMPT_STALLED),
}


def sources_measuring(metric: str) -> tuple[str, ...]:
    """The sources that measure ``metric``, in the catalogue's order."""
    return tuple(name for name, measured in SOURCES.items() if metric in measured)


Measurements = dict[str, list[tuple[float, dict[str, str | int]]]]


def register(meter: Meter, snapshot: Callable[[], Measurements]) -> None:
    """Create every instrument, each reading its own series from the latest snapshot."""

    def observer(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(value, attributes) for value, attributes in snapshot().get(name, ())]

        return observe

    for spec in CATALOGUE:
        create = meter.create_observable_counter if spec.counter else meter.create_observable_gauge
        create(spec.name, callbacks=[observer(spec.name)], unit=spec.unit, description=spec.description)
