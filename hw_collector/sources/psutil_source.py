"""Host CPU, memory, swap and temperatures, and the Ollama process tree, through psutil."""

from __future__ import annotations

import logging

import psutil

from hw_collector import instruments as m
from hw_collector.sources import Reading

log = logging.getLogger(__name__)

# `ollama serve` and its runners (`ollama runner`); versions before 0.5 ran `ollama_llama_server`.
OLLAMA_NAMES = frozenset({"ollama", "ollama.exe", "ollama_llama_server", "ollama_llama_server.exe"})


class PsutilSource:
    name = "psutil"

    def __init__(self) -> None:
        self._cpu_count = psutil.cpu_count() or 1
        self._ollama: dict[int, psutil.Process] = {}  # processes with a CPU baseline from the last sample

    def available(self) -> str | None:
        # The first cpu_percent(None) only starts the clock; the first sample measures from here.
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)
        return None

    def read(self) -> list[Reading]:
        readings = self._cpu() + self._memory() + self._temperatures()
        readings += self._ollama_tree()
        return readings

    def _cpu(self) -> list[Reading]:
        readings = [Reading(m.CPU_UTILIZATION, psutil.cpu_percent(interval=None) / 100, {})]
        for number, percent in enumerate(psutil.cpu_percent(interval=None, percpu=True)):
            readings.append(Reading(m.CPU_UTILIZATION, percent / 100, {"cpu.logical_number": number}))
        return readings

    def _memory(self) -> list[Reading]:
        memory = psutil.virtual_memory()
        readings = [
            Reading(m.MEMORY_LIMIT, memory.total, {}),
            Reading(m.MEMORY_UTILIZATION, memory.used / memory.total, {}),
        ]
        for state in ("used", "free", "cached", "buffers"):
            if hasattr(memory, state):
                readings.append(Reading(m.MEMORY_USAGE, getattr(memory, state), {"system.memory.state": state}))
        swap = psutil.swap_memory()
        if swap.total:
            readings += [
                Reading(m.PAGING_USAGE, swap.used, {"system.paging.state": "used"}),
                Reading(m.PAGING_USAGE, swap.free, {"system.paging.state": "free"}),
                Reading(m.PAGING_UTILIZATION, swap.used / swap.total, {}),
            ]
        return readings

    def _temperatures(self) -> list[Reading]:
        sensors = getattr(psutil, "sensors_temperatures", None)
        if sensors is None:
            return []
        readings = []
        for chip, entries in sensors().items():
            for index, entry in enumerate(entries):
                if entry.current is None or entry.current <= -273:
                    continue
                location = f"{chip}/{entry.label or index}"
                readings.append(
                    Reading(m.TEMPERATURE, entry.current, {"hw.id": location, "hw.type": "temperature", "hw.sensor_location": location})
                )
        return readings

    def _ollama_tree(self) -> list[Reading]:
        roots = [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "") in OLLAMA_NAMES]
        tree: dict[int, psutil.Process] = {}
        for root in roots:
            tree[root.pid] = root
            try:
                for child in root.children(recursive=True):
                    tree[child.pid] = child
            except psutil.Error:
                continue
        if not tree:
            self._ollama.clear()
            return []
        cpu = 0.0
        rss = 0
        measured = False
        for pid, process in tree.items():
            known = self._ollama.get(pid)
            try:
                if known is not None and known.is_running():
                    cpu += known.cpu_percent(interval=None)
                    measured = True
                else:
                    process.cpu_percent(interval=None)  # baseline; measured from the next sample
                    self._ollama[pid] = process
                    known = process
                rss += known.memory_info().rss
            except psutil.Error:
                self._ollama.pop(pid, None)
        for gone in set(self._ollama) - set(tree):
            del self._ollama[gone]
        attributes = {"process.executable.name": "ollama"}
        readings = [Reading(m.PROCESS_MEMORY_USAGE, rss, attributes)]
        if measured:
            readings.append(Reading(m.PROCESS_CPU_UTILIZATION, cpu / 100 / self._cpu_count, attributes))
        return readings

    def close(self) -> None:
        pass
