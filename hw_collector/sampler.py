"""The background sampler: every interval, read each active source into a fresh snapshot.

Instrument callbacks only read the latest snapshot, so a scrape never waits on hardware.
A source that fails stops its series (its readings are simply absent), is logged once,
and is tried again next interval; the others carry on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from hw_collector import instruments as m
from hw_collector.config import CollectorSettings
from hw_collector.instruments import Measurements
from hw_collector.sources import Reading, Source
from hw_collector.sources.amd_sysfs import AmdSysfsSource
from hw_collector.sources.ioreg import IoregSource
from hw_collector.sources.macmon import MacmonSource
from hw_collector.sources.nvml import NvmlSource
from hw_collector.sources.ollama_log import OllamaLogSource
from hw_collector.sources.ollama_ps import OllamaSource
from hw_collector.sources.psutil_source import PsutilSource
from hw_collector.sources.rapl import RaplSource

log = logging.getLogger(__name__)


def default_sources(settings: CollectorSettings) -> list[Source]:
    macmon = MacmonSource(settings.macmon, settings.interval_s)
    return [
        PsutilSource(),
        NvmlSource(),
        AmdSysfsSource(settings.sysfs_root),
        RaplSource(settings.sysfs_root),
        macmon,
        IoregSource(macmon),  # probed after macmon: only when macmon is not running
        OllamaSource(settings.ollama, timeout_s=min(2.0, settings.interval_s / 2)),
        OllamaLogSource(settings.ollama_log, settings.ollama),
    ]


class Sampler:
    def __init__(self, sources: list[Source], interval_s: float) -> None:
        self._candidates = sources
        self._active: list[Source] = []
        self._failing: set[str] = set()
        self._interval = interval_s
        self._snapshot: Measurements = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hw-sampler", daemon=True)
        self.last_sample_seconds = 0.0

    def snapshot(self) -> Measurements:
        return self._snapshot

    def active(self, name: str) -> Source | None:
        """The source called ``name`` where it is active on this machine."""
        return next((source for source in self._active if source.name == name), None)

    def start(self) -> None:
        for source in self._candidates:
            try:
                why_not = source.available()
            except Exception as exc:  # a probe that crashes means the source is not usable here
                why_not = f"probe failed: {exc}"
            if why_not is None:
                self._active.append(source)
                log.info("source %s: active", source.name)
            else:
                log.info("source %s: off (%s)", source.name, why_not)
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 5)
        for source in self._active:
            source.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        started = time.perf_counter()
        readings: list[Reading] = []
        active = {source.name for source in self._active}
        for source in self._active:
            try:
                readings += source.read()
            except Exception as exc:
                if source.name not in self._failing:
                    log.warning("source %s failed, its series stop until it recovers: %s", source.name, exc)
                    self._failing.add(source.name)
                if source.name == "ollama":
                    readings.append(Reading(m.OLLAMA_UP, 0, {"ollama.version": ""}))
                continue
            if source.name in self._failing:
                log.info("source %s recovered", source.name)
                self._failing.discard(source.name)
        for source in self._candidates:
            up = source.name in active and source.name not in self._failing
            readings.append(Reading(m.SOURCE_UP, 1 if up else 0, {"source": source.name}))
        snapshot: Measurements = defaultdict(list)
        for reading in readings:
            snapshot[reading.metric].append((reading.value, reading.attributes))
        self._snapshot = dict(snapshot)
        self.last_sample_seconds = time.perf_counter() - started
