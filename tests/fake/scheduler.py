"""The fake Ollama's scheduler, rule by rule as Ollama's (ollama/ollama fb30760, shared/ollama-facts.md).

1. **Warm hand-over** (server/sched.go ``Scheduler.GetRunner``, ``LlmRequest.useLoadedRunner``):
   a loaded runner for the model's blob whose runner options match (``runnerRef.needsReload``
   false) takes the request at once and counts it (``refCount``), however many already run on
   it, and also while it drains for a reload.
2. **The slot semaphore** (llm/llama_server.go ``llamaServerRunner.Completion`` / ``Embedding``:
   ``s.sem.Acquire``): ``numParallel`` requests run at a time; the rest wait *after* the
   hand-over, so the wait is outside ``load_duration`` (and outside prompt and eval): it shows
   only in ``total_duration``. An MLX runner (x/mlxrunner) serves one request at a time, and
   server/sched.go ``Scheduler.load`` gives one slot to embedding models and to the
   architectures not safe in parallel (``SINGLE_SLOT_FAMILIES``).
3. **The pending queue** (server/sched.go ``processPending``): a request with no usable runner
   waits in ``pendingReqCh``, served one at a time **for all models**, by one goroutine; a
   request that finds the runner loaded by the one before it is handed over.
4. **Reloads** (server/sched.go ``processPending``, ``processCompleted``): when the options
   differ, the old runner gets ``sessionDuration = 0``; the pending loop waits until its
   ``refCount`` is 0 (requests with the old options still join it meanwhile), unloads it,
   then loads.
5. **Context length** (server/routes.go ``Serve``, envconfig ``ContextLength``): the request's
   ``num_ctx``, else OLLAMA_CONTEXT_LENGTH, else chosen from total VRAM (≥ 47 GiB: 262144,
   ≥ 23 GiB: 32768, else 4096), then clamped to the model's training context (server/sched.go
   ``effectiveContext``) with a floor of 4.
6. **Room for another model** (server/sched.go ``processPending``, ``findRunnerToUnload``,
   ``ByDurationAndName``): with OLLAMA_MAX_LOADED_MODELS runners loaded, a load first evicts one:
   the idle runner with the shortest ``sessionDuration`` (then by blob); with none idle, the one
   with the shortest, drained first (``sessionDuration = 0``, its requests left to end). Ollama's automatic limit
   (three a GPU) and its VRAM fit (``Scheduler.load``'s ``needEvict``) are not modelled: the fake
   has no memory estimates, so with ``max_runners`` 0 nothing is evicted for room.
7. **Keep-alive** (server/sched.go ``processCompleted``): a runner idle for ``keep_alive``
   (default 5 minutes, 0: at once) is unloaded. Its ``expiresAt`` is set only when it goes idle
   (its last request ends), from the ``keep_alive`` of the latest request handed it
   (``useLoadedRunner``); until then /api/ps (server/routes.go ``PsHandler``) shows the Go zero
   time on a fresh runner, and the previous, perhaps past, expiry on a busy one.

``load_duration`` is ``checkpointLoaded − checkpointStart`` (server/routes.go): from the
handler's start to the hand-over, Ollama's body parsing and ping included
(``SCHEDULING_OVERHEAD_S``). Every request leaves a ``Truth`` in ``log``: each part of its time,
named; the ground truth the proxy's account is tested against. Every load and unload leaves a
``Residency`` event in ``residency``: which model was resident when, and why it went.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from tests.fake.prompt_cache import DEFAULT_RAM_BYTES, PromptCache, tokens_of
from tests.fake.server_log import ServerLog, blob_path

SCHEDULING_OVERHEAD_S = 0.0015
DEFAULT_KEEP_ALIVE_S = 300.0
GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=timezone.utc)  # time.Time{}, which encoding/json writes as 0001-01-01T00:00:00Z
GIB = 1 << 30
# A token's K and V in every layer, f16, as llama-server saves them: a 3B llama (28 layers, 8 KV heads of 128) holds
# 2 × 28 × 8 × 128 × 2 = 114,688 bytes a token, so the 8 GiB RAM prompt cache about 75,000 tokens.
KV_BYTES_PER_TOKEN = 114_688
# server/sched.go Scheduler.load: "Some architectures are not safe with num_parallel > 1" (ollama/ollama#4165)
SINGLE_SLOT_FAMILIES = frozenset({"mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe", "nemotron_h", "nemotron_h_moe", "nemotron_h_omni"})
RUNNER_OPTIONS = ("num_ctx", "num_gpu", "num_batch", "main_gpu", "use_mmap", "num_thread")  # api.Runner's fields


class _Held:
    """A lock already acquired, released when the block ends."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


def default_num_ctx(total_vram: int, context_env: int | None = None) -> int:
    """OLLAMA_CONTEXT_LENGTH when set, else the default server/routes.go ``Serve`` picks from total VRAM."""
    if context_env:
        return context_env
    if total_vram >= 47 * GIB:
        return 262144
    if total_vram >= 23 * GIB:
        return 32768
    return 4096


def runner_options(options: dict[str, Any] | None, default_ctx: int = 4096, train_ctx: int = 131072) -> dict[str, Any]:
    """The options that decide the runner (api.Runner), ``num_ctx`` resolved and clamped (``effectiveContext``)."""
    options = options or {}
    chosen = {name: options[name] for name in RUNNER_OPTIONS if name in options}
    chosen["num_ctx"] = max(4, min(int(chosen.get("num_ctx", default_ctx)), train_ctx))
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


class ServerBusy(Exception):
    """server/sched.go ErrMaxQueue: the pending queue (pendingReqCh, OLLAMA_MAX_QUEUE long) is full."""

    def __str__(self) -> str:
        return "server busy, please try again.  maximum pending requests exceeded"


@dataclass
class Runner:
    key: str  # schedulerModelKey: the model's blob
    name: str  # DisplayShortest of the request that loaded it: what /api/ps lists
    options: dict[str, Any]
    slots: asyncio.Semaphore
    refs: int = 0  # refCount: requests handed this runner and not yet ended
    draining: bool = False  # sessionDuration = 0: unloaded once refs is 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    expires: float = float("inf")  # monotonic
    expires_at: datetime = GO_ZERO_TIME  # runnerRef.expiresAt: unset until the runner first goes idle
    session_s: float = DEFAULT_KEEP_ALIVE_S  # runnerRef.sessionDuration: the latest hand-over's keep_alive
    cache: PromptCache | None = None  # llama-server's slots and RAM prompt cache: a new runner's are empty


@dataclass
class Truth:
    """What happened to one request, every part of its time named (seconds)."""

    request_id: str
    model: str  # as the client sent it
    runner: str  # the runner's name in /api/ps
    pending_s: float = 0.0  # waiting in the pending queue behind other requests' loads
    behind: list[str] = field(default_factory=list)  # the loads it waited behind: "model (cold)" or "model (reload)"
    drain_s: float = 0.0  # waiting for the old runner's requests before a reload
    evict_s: float = 0.0  # waiting for another model's runner to be drained and unloaded, to make room
    load_s: float = 0.0
    load_reason: str | None = None  # "cold", "reload" or None
    reload_cause: str | None = None
    slot_s: float = 0.0  # waiting for a free slot, after the hand-over
    prompt_s: float = 0.0
    eval_s: float = 0.0
    load_duration_s: float = 0.0  # what Ollama reports
    num_ctx: int = 0
    prompt_tokens: int = 0  # the prompt the runner was handed (after Ollama's cuts)
    cached_tokens: int | None = None  # of them, read from the runner's cache (cache_n); None without a runner (cloud)
    truncated: bool = False  # the runner's truncation (llm/llama_server.go completionPromptForRequest) cut it
    arrived_at: float = 0.0  # unix seconds: when the handler started (what Ollama's durations count from)

    @property
    def waiting_s(self) -> float:
        return self.pending_s + self.drain_s + self.slot_s


@dataclass
class Residency:
    """A runner loaded or unloaded, at ``at`` (unix seconds): the truth the residency timeline is tested against."""

    model: str  # the runner's name in /api/ps
    event: str  # "load" or "unload"
    at: float
    reason: str  # load: "cold" or "reload"; unload: "expired", "evicted", "reload" or "unloaded"
    by: str | None = None  # evicted: the model whose load pushed it out
    cause: str | None = None  # a reload's: the runner options that changed


def _epoch(monotonic_at: float) -> float:
    return time.time() - (time.monotonic() - monotonic_at)


@dataclass
class _Pending:
    """An entry of the pending queue as it is served, for those that waited behind it."""

    model: str
    reason: str | None = None


class Ticket:
    """What a request holds while it runs: Ollama's ``load_duration``, the runner's prompt cache, the place to log its phases."""

    def __init__(self, load_ns: int, truth: Truth, cache: PromptCache | None = None, mlx: bool = False) -> None:
        self.load_ns = load_ns
        self.mlx = mlx  # on an MLX runner (x/mlxrunner): its own log lines, none of llama-server's
        self.truth = truth
        self._cache = cache
        self._slot: int | None = None
        self._prompt = tokens_of([])
        self._generated: list[int] = []
        self.on_release: Callable[[int], None] | None = None  # told the tokens in the slot as the task ends (the server log's line)

    def prompt(self, tokens: np.ndarray) -> int | None:
        """The runner takes the prompt into one of its slots: how many of its tokens the slot's cache held (cache_n),
        or None where there is no runner (a cloud model)."""
        self.truth.prompt_tokens = len(tokens)
        if self._cache is None:
            return None
        self._slot, cached = self._cache.begin(tokens)
        self._prompt, self.truth.cached_tokens = tokens, cached
        return cached

    def generated(self, tokens: list[int]) -> None:
        self._generated += tokens

    @property
    def slot(self) -> int | None:
        """The runner's slot the prompt was taken into (None before, and where there is no runner)."""
        return self._slot

    def release(self) -> None:
        """The task is over (done or cancelled): its slot keeps the prompt and what was generated."""
        if self._cache is not None and self._slot is not None:
            self._cache.end(self._slot, self._prompt, tokens_of(self._generated))
            if self.on_release is not None:
                self.on_release(len(self._prompt) + len(self._generated))
            self._slot = None

    def ran(self, prompt_s: float, eval_s: float) -> None:
        self.truth.prompt_s, self.truth.eval_s = prompt_s, eval_s


class Scheduler:
    def __init__(self, load_delay: float, parallel: int = 64, total_vram: int = 8 * GIB) -> None:
        self.load_delay = load_delay
        self.parallel = parallel  # OLLAMA_NUM_PARALLEL (Ollama's default is 1; the tests that need it set it)
        self.total_vram = total_vram
        self.context_env: int | None = None  # OLLAMA_CONTEXT_LENGTH
        self.max_runners = 0  # OLLAMA_MAX_LOADED_MODELS (0: no limit here, see rule 6)
        self.runners: dict[str, Runner] = {}  # s.loaded, keyed by blob
        self.log: list[Truth] = []
        self.residency: list[Residency] = []
        self._pending = asyncio.Lock()  # processPending: one at a time, first come first served
        self.cache_ram_bytes = DEFAULT_RAM_BYTES  # llama-server's --cache-ram, which Ollama leaves at its default
        self.max_queue = 512  # OLLAMA_MAX_QUEUE: how many requests pendingReqCh holds
        self._queued = 0  # requests in pendingReqCh: waiting for processPending, not yet taken
        self._served: list[_Pending] = []  # every pending entry, in the order it was served
        self._serving = False
        self.loading: str | None = None  # the runner being loaded now, for tests to act while it loads
        self.server_log: ServerLog | None = None  # the server log the fake writes (--log), where it writes one

    def default_ctx(self) -> int:
        return default_num_ctx(self.total_vram, self.context_env)

    def _expire(self, now: float) -> None:
        for key, runner in list(self.runners.items()):
            if runner.refs == 0 and runner.expires <= now and not runner.draining:  # a drained one: the pending loop unloads it
                self._unload(key, "expired", _epoch(runner.expires))

    def _unload(self, key: str, reason: str, at: float | None = None, by: str | None = None) -> None:
        runner = self.runners.pop(key, None)
        if runner is not None:
            self.residency.append(Residency(runner.name, "unload", time.time() if at is None else at, reason, by))

    def resident(self) -> list[Runner]:
        self._expire(time.monotonic())
        return list(self.runners.values())

    def unload_all(self) -> None:
        for key in list(self.runners):
            self._unload(key, "unloaded")

    def unload(self, key: str) -> None:
        self._unload(key, "unloaded")

    def _usable(self, key: str, wanted: dict[str, Any]) -> Runner | None:
        self._expire(time.monotonic())
        runner = self.runners.get(key)
        return runner if runner is not None and runner.options == wanted else None

    @asynccontextmanager
    async def slot(
        self,
        model: str,
        options: dict[str, Any] | None = None,
        keep_alive: Any = None,
        request_id: str = "",
        *,
        key: str | None = None,
        name: str | None = None,
        train_ctx: int = 131072,
        mlx: bool = False,
        one_slot: bool = False,
        kv_bytes_per_token: int = KV_BYTES_PER_TOKEN,
        started: float | None = None,
    ) -> AsyncIterator[Ticket]:
        """Run a request on a runner for ``model`` (blob ``key``, listed as ``name``) while the block runs;
        ``one_slot``: an embedding model or an architecture Ollama runs with one slot."""
        arrived = time.perf_counter() if started is None else started
        key, name = key or model, name or model
        wanted = runner_options(options, self.default_ctx(), train_ctx)
        truth = Truth(request_id, model, name, num_ctx=int(wanted["num_ctx"]), arrived_at=time.time() - (time.perf_counter() - arrived))
        runner = self._usable(key, wanted)
        if runner is None:
            runner = await self._through_the_pending_queue(key, name, wanted, mlx or one_slot, truth, kv_bytes_per_token, mlx=mlx)
        runner.refs += 1  # useLoadedRunner: handed over, whatever already runs on it
        if keep_alive is not None:
            runner.session_s = keep_alive_seconds(keep_alive)  # useLoadedRunner: pending.sessionDuration, when the request set one
        try:
            await asyncio.sleep(SCHEDULING_OVERHEAD_S)  # body parsing, the ping: inside load_duration
            load_ns = int((time.perf_counter() - arrived) * 1e9)
            truth.load_duration_s = load_ns / 1e9
            waiting = time.perf_counter()
            async with runner.slots:  # llamaServerRunner.Completion: s.sem.Acquire, after checkpointLoaded
                truth.slot_s = time.perf_counter() - waiting
                self.log.append(truth)
                ticket = Ticket(load_ns, truth, runner.cache, mlx=mlx)
                try:
                    yield ticket
                finally:
                    ticket.release()
        finally:
            runner.refs -= 1
            if runner.refs == 0:  # processCompleted: gone idle, the timer (re)set from now
                seconds = 0.0 if runner.draining else runner.session_s
                runner.expires = time.monotonic() + seconds
                runner.expires_at = datetime.now(timezone.utc) + (timedelta(days=3650) if seconds == float("inf") else timedelta(seconds=seconds))
                runner.drained.set()

    async def _through_the_pending_queue(self, key: str, name: str, wanted: dict[str, Any], one_slot: bool, truth: Truth, kv_bytes_per_token: int,
                                         mlx: bool = False) -> Runner:
        """processPending: wait for the queue (behind every model's loads), then drain, unload, load."""
        if self._queued >= self.max_queue:  # GetRunner: `select { case s.pendingReqCh <- req: default: req.errCh <- ErrMaxQueue }`
            raise ServerBusy
        queued = time.perf_counter()
        first = len(self._served) - (1 if self._serving else 0)  # the entry being served now holds this one up too
        self._queued += 1
        try:
            await self._pending.acquire()
        finally:
            self._queued -= 1
        async with _Held(self._pending):
            self._serving = True
            try:
                truth.pending_s = time.perf_counter() - queued
                truth.behind = [f"{entry.model} ({entry.reason})" for entry in self._served[first:] if entry.reason]
                entry = _Pending(name)
                self._served.append(entry)
                while True:
                    self._expire(time.monotonic())
                    runner = self.runners.get(key)
                    if runner is None:
                        break
                    if runner.options == wanted:
                        return runner  # loaded by a request ahead of this one
                    changed = [f"{option} {runner.options.get(option)} -> {wanted.get(option)}" for option in sorted(set(runner.options) | set(wanted))
                               if runner.options.get(option) != wanted.get(option)]
                    truth.load_reason, truth.reload_cause = "reload", ", ".join(changed)
                    runner.draining = True  # sessionDuration = 0; old-option requests still join it meanwhile
                    draining = time.perf_counter()
                    while runner.refs:
                        runner.drained.clear()
                        await runner.drained.wait()
                    truth.drain_s += time.perf_counter() - draining
                    if self.runners.get(key) is runner:
                        self._unload(key, "reload")
                evicting = time.perf_counter()
                while self.max_runners and len(self.runners) >= self.max_runners:
                    await self._make_room(name)
                truth.evict_s = time.perf_counter() - evicting
                truth.load_reason = truth.load_reason or "cold"
                entry.reason = truth.load_reason
                loading = time.perf_counter()
                slots = 1 if one_slot else self.parallel
                if self.server_log is not None and not mlx:  # x/mlxrunner is no llama-server: no command line of its
                    num_gpu = wanted.get("num_gpu")
                    self.server_log.runner_started(blob_path(key), int(wanted["num_ctx"]), slots, random.randint(49152, 65535),
                                                   int(num_gpu) if isinstance(num_gpu, (int, float)) else None)
                self.loading = name
                try:
                    await asyncio.sleep(self.load_delay)
                finally:
                    self.loading = None
                truth.load_s = time.perf_counter() - loading
                # llm/llama_server.go: `-np` slots, `-c` num_ctx × slots, --cache-ram left at its default
                cache = PromptCache(slots, int(wanted["num_ctx"]) * slots, kv_bytes_per_token, self.cache_ram_bytes)
                runner = self.runners[key] = Runner(key, name, wanted, asyncio.Semaphore(slots), cache=cache)
                self.residency.append(Residency(name, "load", time.time(), truth.load_reason, cause=truth.reload_cause))
                return runner
            finally:
                self._serving = False

    async def _make_room(self, loading: str) -> None:
        """findRunnerToUnload: the idle runner with the shortest session (then by blob), else the one with the
        shortest, drained first; its sessionDuration set to 0, then unloaded (processPending waits on unloadedCh)."""
        by_duration = sorted(self.runners.items(), key=lambda item: (0.0 if item[1].draining else item[1].session_s, item[0]))
        key, victim = next(((key, runner) for key, runner in by_duration if runner.refs == 0), by_duration[0])
        victim.draining = True
        while victim.refs:
            victim.drained.clear()
            await victim.drained.wait()
        if self.runners.get(key) is victim:
            self._unload(key, "evicted", by=loading)
