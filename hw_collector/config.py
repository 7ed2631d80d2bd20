"""The hardware collector's settings, built once in ``__main__``."""

from __future__ import annotations

from dataclasses import dataclass

from ollama_otel_stack.stack.defaults import COLLECTOR_PORT, OLLAMA_URL


@dataclass(frozen=True)
class CollectorSettings:
    host: str = "127.0.0.1"
    port: int = COLLECTOR_PORT
    ollama: str = OLLAMA_URL
    interval_s: float = 5.0  # how often the sampler refreshes the snapshot that /metrics reads
    sysfs_root: str = "/sys"  # where drm/ and powercap/ live (tests point it at a recorded tree)
    macmon: str = "macmon"  # the macmon binary (Apple Silicon)
    ollama_log: str = "auto"  # Ollama's server log: auto, a file, journald[:UNIT], podman:NAME, docker:NAME or off

    @property
    def instance_id(self) -> str:
        return f"{self.host}:{self.port}"
