"""Ollama's own server log as a source (``--ollama-log``): what no API of Ollama tells.

A thread of its own follows the log (hw_collector/log_follow.py) every ``POLL_S`` and reads each line
(hw_collector/log_lines.py) into ``ServerLog``: the requests Ollama served, by route and status (those that bypassed
the proxy among them), the prompts it cut, the runners it started with their real settings, and what each slot is
doing now. The sampler's ``read`` only takes a copy, so a slow or huge log never holds up the collector's other
sources, and ``live`` serves ``GET /-/live``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import httpx

from hw_collector import instruments as m
from hw_collector import log_lines as lines
from hw_collector.log_follow import CommandFollower, FileFollower, Missing, follower
from hw_collector.sources import Reading

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the log is read: progress reaches /-/live within this and the line's own delay
MAX_RUNNERS = 32  # runners remembered (one a model Ollama loaded; the oldest forgotten first)
RECENT_CUTS = 100  # prompts Ollama cut, the latest, at /-/live: the page joins them with the proxy's requests
PHASES = ("reading", "generating")
STALE_S = 3600.0  # a slot with no line for this long is forgotten (its lines were lost, or the runner died)
MLX_STALE_S = 60.0  # an MLX prompt with no line for this long is forgotten: its runner writes none when a request ends
MLX = -1  # the slot key of the MLX runner's request: (MLX, its count)


@dataclass
class Slot:
    """A request on a runner's slot, as its lines tell it."""

    slot: int | None  # None: the MLX runner's one request (it names no slot)
    task: int
    prompt_tokens: int
    context: int
    since: float  # unix seconds the slot took it
    updated: float  # monotonic seconds of its last line
    phase: str = "reading"  # PHASES: reading the prompt, then generating
    cached: int | None = None  # tokens the cache held (the task's first "cached n_tokens")
    read: int | None = None  # tokens of the prompt in the slot now
    read_since: tuple[float, int] | None = None  # (monotonic, tokens) at the first batch read: the rate's base
    rate: float | None = None  # prompt tokens a second, from the batches read so far
    generating_since: float | None = None
    model_path: str | None = None  # the runner's, where one the collector saw start has this slot's context

    def as_json(self, now: float) -> dict[str, Any]:
        left = None if self.rate is None or self.read is None or self.phase != "reading" else max(self.prompt_tokens - self.read, 0) / self.rate
        return {"slot": self.slot, "task": self.task, "phase": self.phase, "since": self.since, "prompt_tokens": self.prompt_tokens,
                "context": self.context, "cached_tokens": self.cached, "read_tokens": self.read, "tokens_per_second": self.rate,
                "eta_s": left, "generating_since": self.generating_since, "silent_s": round(now - self.updated, 3)}


class ServerLog:
    """What the log has said since the collector started. Not thread-safe: ``OllamaLogSource`` holds its lock."""

    def __init__(self) -> None:
        self.lines: Counter[bool] = Counter({True: 0, False: 0})  # both from 0: rate() counts the first unknown line
        self.requests: Counter[tuple[str, int, bool]] = Counter()  # (route, status, sent by this stack)
        self.truncations: Counter[str] = Counter()  # by the runner's model path, "" where not known
        self.truncated_tokens: Counter[tuple[str, str]] = Counter()  # (model path, "prompt" | "cut")
        self.num_parallel: int | None = None  # OLLAMA_NUM_PARALLEL, from the latest start's "server config"
        self.cuts: deque[tuple[float, str, lines.Truncated]] = deque(maxlen=RECENT_CUTS)  # (when, model path, the cut)
        self.runners: dict[str, lines.RunnerStarted] = {}  # by model path, the latest start of each
        self.slots: dict[tuple[int, int], Slot] = {}
        self.mlx: dict[str, Any] | None = None
        self._mlx_tasks = 0

    def take(self, line: str, now: float, wall: float) -> None:
        event = lines.parse(line)
        self.lines[event is not None] += 1
        if isinstance(event, lines.Access):
            self.requests[(event.route, event.status, event.own)] += 1
        elif isinstance(event, lines.RunnerStarted):
            self.runners.pop(event.model_path, None)
            self.runners[event.model_path] = event
            while len(self.runners) > MAX_RUNNERS:
                self.runners.pop(next(iter(self.runners)))
        elif isinstance(event, lines.Truncated):
            # the line names no runner: the model is known only while one runner is all Ollama has started
            path = next(iter(self.runners)) if len(self.runners) == 1 else ""
            self.truncations[path] += 1
            self.truncated_tokens[(path, "prompt")] += event.prompt
            self.truncated_tokens[(path, "cut")] += event.prompt - event.new
            self.cuts.append((wall, path, event))
        elif isinstance(event, lines.ServerConfig):
            self.num_parallel = event.num_parallel  # Ollama started again: its runners with it
            self.runners.clear()
        elif isinstance(event, (lines.PromptStarted, lines.PromptRead, lines.PromptDone, lines.SlotReleased)):
            self._slot(event, now, wall)
        elif isinstance(event, lines.MlxProgress):
            self.mlx = {"processed": event.processed, "total": event.total, "at": wall}
            self._mlx(event, now, wall)
        self._forget(now)

    def recall(self, past: list[str]) -> None:
        """What Ollama said at its start, in the log's past that following it from its end skips: its settings (the
        latest ``server config``). Nothing else is taken from it: what was counted then is not this collector's."""
        for line in past:
            if "server config" in line and isinstance(event := lines.parse(line), lines.ServerConfig):
                self.num_parallel = event.num_parallel

    def _slot(self, event: lines.PromptStarted | lines.PromptRead | lines.PromptDone | lines.SlotReleased, now: float, wall: float) -> None:
        key = (event.slot, event.task)
        if isinstance(event, lines.PromptStarted):
            # llama-server's lines name no model: the runner is the one started with this context per slot, if only one was
            runners = [path for path, runner in self.runners.items() if runner.context_per_slot == event.context]
            self.slots[key] = Slot(event.slot, event.task, event.prompt_tokens, event.context, since=wall, updated=now,
                                   model_path=runners[0] if len(runners) == 1 else None)
            return
        slot = self.slots.get(key)
        if slot is None:  # its start was before the collector's: nothing to say of it
            return
        slot.updated = now
        if isinstance(event, lines.PromptRead):
            if slot.cached is None:
                slot.cached = event.tokens
            if slot.read_since is None:
                slot.read_since = (now, event.tokens)
            elif now > slot.read_since[0] and event.tokens > slot.read_since[1]:
                slot.rate = (event.tokens - slot.read_since[1]) / (now - slot.read_since[0])
            slot.read = event.tokens
        elif isinstance(event, lines.PromptDone):
            slot.phase, slot.read, slot.generating_since = "generating", slot.prompt_tokens, wall
            slot.rate = event.tokens / event.seconds if event.seconds > 0 else slot.rate
        else:
            del self.slots[key]

    def _mlx(self, event: lines.MlxProgress, now: float, wall: float) -> None:
        """The MLX runner reads a prompt's tokens not in its cache a chunk at a time, a line each (x/mlxrunner/pipeline.go),
        the last token left for the first decode: read when ``total − processed`` is 1. A line that does not go on from
        the one before (another total, fewer processed) begins another request."""
        key, slot = next(((key, slot) for key, slot in self.slots.items() if key[0] == MLX), (None, None))
        if slot is None or slot.prompt_tokens != event.total or (slot.read or 0) >= event.processed:
            if key is not None:
                del self.slots[key]
            self._mlx_tasks += 1
            key = (MLX, self._mlx_tasks)
            slot = self.slots[key] = Slot(None, self._mlx_tasks, event.total, 0, since=wall, updated=now, read_since=(now, event.processed))
        elif now > slot.read_since[0]:  # type: ignore[index]
            slot.rate = (event.processed - slot.read_since[1]) / (now - slot.read_since[0])  # type: ignore[index]
        slot.updated, slot.read = now, event.processed
        if event.total - event.processed <= 1:  # read: what it generates, the runner does not log
            del self.slots[key]

    def _forget(self, now: float) -> None:
        for key in [key for key, slot in self.slots.items() if now - slot.updated > (MLX_STALE_S if key[0] == MLX else STALE_S)]:
            del self.slots[key]


class BlobNames:
    """The model names of the blobs runners are started on: Ollama's log names a runner's model by its blob's path,
    and ``/api/show``'s modelfile has that path on its ``FROM`` line (shared/ollama-facts.md, "Names"). Each name
    /api/tags lists is shown once; a path still unknown is looked for again after ``RETRY_S``."""

    RETRY_S = 30.0

    def __init__(self, base_url: str, timeout_s: float = 2.0) -> None:
        self._base = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout_s, trust_env=False)
        self._names: dict[str, str] = {}
        self._shown: set[str] = set()
        self._tried: dict[str, float] = {}

    def name(self, path: str) -> str:
        """The model's name where known, else the blob's file name (``sha256-…``)."""
        return self._names.get(path) or PurePath(path).name

    def learn(self, paths: Iterable[str]) -> None:
        now = time.monotonic()
        wanted = [path for path in paths if path not in self._names and now - self._tried.get(path, -self.RETRY_S) >= self.RETRY_S]
        if not wanted:
            return
        for path in wanted:
            self._tried[path] = now
        try:
            tags = self._client.get(self._base + "/api/tags").json().get("models") or []
            for name in sorted({str(model.get("name") or model.get("model") or "") for model in tags} - self._shown - {""}, key=lambda n: (len(n), n)):
                shown = self._client.post(self._base + "/api/show", json={"model": name})
                self._shown.add(name)
                if shown.status_code == 200:
                    for path in _FROM.findall(str(shown.json().get("modelfile") or "")):
                        self._names.setdefault(path.strip(), name)
                if all(path in self._names for path in wanted):
                    return
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.info("the names of Ollama's runners' models are not known yet: %s", exc)

    def close(self) -> None:
        self._client.close()


_FROM = re.compile(r"^FROM (.+)$", re.MULTILINE)


class OllamaLogSource:
    """Follows the log on a thread of its own; present wherever ``--ollama-log`` is not ``off``."""

    name = "ollama_log"

    def __init__(self, spec: str, ollama_url: str) -> None:
        self._spec = spec
        self._names = BlobNames(ollama_url)
        self._follower: FileFollower | CommandFollower | None = None
        self._state = ServerLog()
        self._lock = threading.Lock()  # the state, between the reader and read/live
        self._reading = threading.Lock()  # the follower, one poll at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._problem: str | None = None

    def available(self) -> str | None:
        if self._spec == "off":
            return "--ollama-log off"
        self._follower = follower(self._spec)
        if self._follower is None:
            return "no Ollama log found (--ollama-log names a file, journald[:UNIT], podman:NAME or docker:NAME)"
        log.info("reading Ollama's log: %s", self._follower.describe)
        if isinstance(self._follower, FileFollower):
            self._state.recall(self._follower.past())
        self.poll()
        self._thread = threading.Thread(target=self._run, name="ollama-log", daemon=True)
        self._thread.start()
        return None

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.poll()

    def poll(self) -> None:
        """Read what the log has added; a log that cannot be read is the source's problem, said by ``read``."""
        assert self._follower is not None
        with self._reading:
            try:
                taken = self._follower.lines()
                self._problem = None
            except (Missing, OSError) as exc:
                self._problem = str(exc)
                return
            now, wall = time.monotonic(), time.time()
            with self._lock:
                for line in taken:
                    self._state.take(line, now, wall)
                paths = list(self._state.runners)
            self._names.learn(paths)

    def read(self) -> list[Reading]:
        if self._problem is not None:
            raise RuntimeError(self._problem)
        with self._lock:
            state = self._state
            readings = [Reading(m.LOG_LINES, count, {"parsed": "true" if parsed else "false"}) for parsed, count in state.lines.items()]
            readings += [Reading(m.SERVER_REQUESTS, count, {"route": route, "status": str(status), **({"origin": "ollama-otel-stack"} if own else {})})
                         for (route, status, own), count in state.requests.items()]
            readings += [Reading(m.PROMPT_TRUNCATIONS, count, {"model": self._names.name(path)} if path else {}) for path, count in state.truncations.items()]
            readings += [Reading(m.TRUNCATED_TOKENS, count, {**({"model": self._names.name(path)} if path else {}), "ollama.tokens": part})
                         for (path, part), count in state.truncated_tokens.items()]
            readings += [Reading(m.SERVER_NUM_PARALLEL, state.num_parallel, {})] if state.num_parallel is not None else []
            readings += [Reading(m.RUNNER_INFO, 1, {"model": self._names.name(r.model_path), "context_per_slot": str(r.context_per_slot or ""), "slots": str(r.slots),
                                                    "kv_cache_type": r.kv_cache_type, "flash_attention": r.flash_attention, "gpu_layers": r.gpu_layers})
                         for r in state.runners.values()]
            now = time.monotonic()
            phases = Counter(slot.phase for slot in state.slots.values())
            readings += [Reading(m.LIVE_REQUESTS, phases[phase], {"phase": phase}) for phase in PHASES]
            reading = [now - slot.updated for slot in state.slots.values() if slot.phase == "reading"]
            readings += [Reading(m.PROMPT_STALLED, max(reading), {})] if reading else []
        return readings

    def live(self) -> dict[str, Any]:
        """What each slot is doing now (``GET /-/live``), the oldest first."""
        now = time.monotonic()
        with self._lock:
            slots = sorted(self._state.slots.values(), key=lambda slot: slot.since)
            return {"source": self._follower.describe if self._follower else None, "problem": self._problem,
                    "requests": [{**slot.as_json(now), "model": self._names.name(slot.model_path) if slot.model_path else None} for slot in slots], "mlx": self._state.mlx,
                    "truncations": [{"at": at, "model": self._names.name(path) if path else None, "limit": cut.limit, "prompt": cut.prompt, "new": cut.new}
                                    for at, path, cut in self._state.cuts]}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._follower is not None:
            self._follower.close()
        self._names.close()
