"""The fake Ollama's scheduler, as Ollama's (server/sched.go, server/routes.go) behaves.

A model runs in a runner loaded with the request's runner options (``num_ctx`` and the
other options that need a new runner). A runner serves ``parallel`` requests at a time
(OLLAMA_NUM_PARALLEL); more wait for a slot. A request for a model with no runner, or
whose runner expired (``keep_alive``, default 5 minutes), loads one: a cold load. A
request whose options differ from the loaded runner's waits until that runner is idle,
then the runner is reloaded with the new options. ``load_duration`` spans all of it, from
the handler's start to the moment a runner slot is handed over, exactly as Ollama's does
(``checkpointLoaded.Sub(checkpointStart)``), Ollama's ~1.5 ms of scheduling included.

Every request leaves a line in ``log``: what really happened (queue wait, load, its
reason and cause), the ground truth the proxy's decomposition is tested against.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

SCHEDULING_OVERHEAD_S = 0.0015
DEFAULT_KEEP_ALIVE_S = 300.0
DEFAULT_NUM_CTX = 4096
RUNNER_OPTIONS = ("num_ctx", "num_gpu", "num_batch", "main_gpu", "use_mmap", "num_thread")  # api.Runner's fields


def runner_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The options that decide the runner (api.Runner), with Ollama's default context length."""
    options = options or {}
    chosen = {name: options[name] for name in RUNNER_OPTIONS if name in options}
    chosen.setdefault("num_ctx", DEFAULT_NUM_CTX)
    return chosen


def keep_alive_seconds(value: Any) -> float:
    """api.Duration: seconds as a number, or a Go duration string ("5m", "30s", "1h"); negative: forever."""
    if value is None:
        return DEFAULT_KEEP_ALIVE_S
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float("inf") if value < 0 else float(value)
    text = str(value).strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "h", "m", "s"):
        if text.endswith(unit):
            number = float(text[: -len(unit)])
            return float("inf") if number < 0 else number * units[unit]
    return float(text)


@dataclass
class Runner:
    model: str
    options: dict[str, Any]
    slots: asyncio.Semaphore
    busy: int = 0  # requests holding or waiting for a slot
    expires: float = float("inf")  # monotonic
    expires_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    idle: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Truth:
    request_id: str
    model: str
    queue_s: float
    load_s: float
    load_reason: str | None  # "cold", "reload" or None
    reload_cause: str | None
    num_ctx: int


class Scheduler:
    def __init__(self, load_delay: float, parallel: int = 64) -> None:
        self.load_delay = load_delay
        self.parallel = parallel
        self.runners: dict[str, Runner] = {}
        self.log: list[Truth] = []
        self._locks: dict[str, asyncio.Lock] = {}

    def _expire(self, now: float) -> None:
        for model, runner in list(self.runners.items()):
            if runner.busy == 0 and runner.expires <= now:
                del self.runners[model]

    def resident(self) -> list[Runner]:
        self._expire(time.monotonic())
        return list(self.runners.values())

    def unload_all(self) -> None:
        self.runners.clear()

    @asynccontextmanager
    async def slot(self, model: str, options: dict[str, Any] | None = None, keep_alive: Any = None, request_id: str = "") -> AsyncIterator[int]:
        """Hold a runner slot for ``model`` while the block runs; yields Ollama's load_duration in ns."""
        arrived = time.perf_counter()
        wanted = runner_options(options)
        reason = cause = None
        load_s = 0.0
        lock = self._locks.setdefault(model, asyncio.Lock())
        async with lock:  # Ollama's scheduler decides one pending request at a time
            self._expire(time.monotonic())
            runner = self.runners.get(model)
            if runner is not None and runner.options != wanted:
                while runner.busy:  # a reload waits for the old runner's requests to finish
                    runner.idle.clear()
                    await runner.idle.wait()
                changed = [f"{name} {runner.options.get(name)} -> {wanted.get(name)}" for name in sorted(set(runner.options) | set(wanted))
                           if runner.options.get(name) != wanted.get(name)]
                reason, cause = "reload", ", ".join(changed)
                del self.runners[model]
                runner = None
            if runner is None:
                reason = reason or "cold"
                started = time.perf_counter()
                await asyncio.sleep(self.load_delay)
                load_s = time.perf_counter() - started
                runner = self.runners[model] = Runner(model, wanted, asyncio.Semaphore(self.parallel))
            runner.busy += 1
        try:
            await runner.slots.acquire()
            try:
                await asyncio.sleep(SCHEDULING_OVERHEAD_S)  # Ollama's own scheduling, measured like the rest
                waited = time.perf_counter() - arrived
                self.log.append(Truth(request_id, model, max(0.0, waited - load_s), load_s, reason, cause, int(wanted["num_ctx"])))
                yield int(waited * 1e9)
            finally:
                runner.slots.release()
        finally:
            runner.busy -= 1
            seconds = keep_alive_seconds(keep_alive)
            runner.expires = time.monotonic() + seconds
            runner.expires_at = datetime.now(timezone.utc) + (timedelta(days=3650) if seconds == float("inf") else timedelta(seconds=seconds))
            if runner.busy == 0:
                runner.idle.set()
