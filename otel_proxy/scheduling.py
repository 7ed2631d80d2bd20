"""What the proxy can tell of Ollama's scheduler: where each request's time went before it ran.

How Ollama schedules (shared/ollama-facts.md, server/sched.go, llm/llama_server.go):

- a request for a loaded runner with the same runner options (``num_ctx``, ``num_gpu`` …
  api.Runner) is handed over at once, whatever runs on it, also while it drains;
- every other request waits in one pending queue, served one at a time **for all models**:
  a load of model A holds up a load of B (not a warm request to B);
- a reload waits for the old runner's requests to end (the drain), then unloads and loads;
- ``load_duration`` runs from the handler's start to the hand-over: pending wait, drain and
  load (and a few ms of parsing when warm);
- the wait for a free OLLAMA_NUM_PARALLEL slot comes **after** the hand-over and shows only as
  ``total − load − prompt_eval − eval``.

The proxy sees every request to Ollama (model, runner options, arrival, end, the
durations Ollama reports) and ``/api/ps``. The rules, written down in docs/metrics.md:

- At arrival, a request is *warm* (the loaded runner fits), *joined* (a load of the runner it
  needs is pending), a *cold* load, a *reload* (its options differ from the newest runner's;
  the cause names them, ``num_ctx 4096 -> 8192``), or *unknown* (residency or options not known).
  Every request that is not warm enters the proxy's copy of the pending queue.
- A runner is known to be loaded once the request that loads it answers (its first chunk).
- At the end, ``load_duration`` under the threshold (0.1 s) was no load and no wait. Above it:
  the **pending wait** runs from arrival to the moment the last request ahead of it in the queue
  was handed its runner (its arrival plus its ``load_duration``), split among those it waited
  behind (each named by model: often another model's load); a reload's **drain** runs from
  then to the end of the last request on the old runner; the **load** is the rest. A joined
  request's whole ``load_duration`` is pending wait. When a request ahead has not ended yet, the
  account waits for it (``settle``); when one ended without reporting ``load_duration`` (the
  OpenAI and Anthropic APIs do not), or the view did not predict the load, the split is
  ``unknown``: nothing is guessed.
- The **slot wait** is ``total − load − prompt_eval − eval``, when that rest is at least
  ``SLOT_WAIT_FLOOR_S`` (below it, it is Ollama's templating and tokenizing).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RUNNER_OPTIONS = ("num_ctx", "num_gpu", "num_batch", "main_gpu", "use_mmap", "num_thread")  # api.Runner
REMEMBERED = 4096  # requests whose hand-over and end times are kept for those queued behind them
SLOT_WAIT_FLOOR_S = 0.005
WARM, JOINED, COLD, RELOAD, UNKNOWN = "warm", "joined", "cold", "reload", "unknown"
PENDING = (JOINED, COLD, RELOAD, UNKNOWN)  # kinds that go through Ollama's pending queue (unknown: may)


@dataclass
class Runner:
    """A runner of a model as far as the proxy knows it.

    ``asked``: the runner options of the request it was loaded for (those left out were
    Ollama's defaults), or None when the proxy did not see it loaded; ``actual``: values
    read from /api/ps (``num_ctx`` from ``context_length``); ``loader``: the request loading
    it (None once loaded); ``members``: the requests handed this runner.
    """

    asked: dict[str, Any] | None = None
    actual: dict[str, Any] = field(default_factory=dict)
    loader: int | None = None
    members: set[int] = field(default_factory=set)  # in flight on it
    drains: list[set[int]] = field(default_factory=list)  # for each reload waiting on it: every request it must see end


@dataclass
class ModelView:
    resident: bool | None = None  # None: not known yet
    runners: list[Runner] = field(default_factory=list)  # the loaded one first (if any), then pending loads in order
    in_flight: dict[int, float] = field(default_factory=dict)  # request -> arrival (perf_counter)
    expires_at: float | None = None  # epoch seconds, from /api/ps
    context_length: int | None = None  # from /api/ps
    defaults: dict[str, Any] = field(default_factory=dict)  # Ollama's defaults for this model, learned from /api/ps

    def loaded(self) -> Runner | None:
        return self.runners[0] if self.runners and self.runners[0].loader is None else None


@dataclass(frozen=True)
class Arrival:
    serial: int
    model: str
    arrived: float
    kind: str  # WARM, JOINED, COLD, RELOAD or UNKNOWN
    cause: str | None = None
    ahead: tuple[int, ...] = ()  # the requests ahead of it in the pending queue
    drains: frozenset[int] | set[int] = frozenset()  # a reload's: the requests on the runner it replaces (growing while it drains)
    context_length: int | None = None
    wanted: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Decomposition:
    """A request's time before it ran, in parts (seconds); None where the proxy cannot tell."""

    pending_s: float | None = None
    drain_s: float | None = None
    load_s: float | None = None
    slot_s: float | None = None
    unknown_s: float | None = None  # load_duration that could not be told apart
    load_reason: str | None = None  # COLD, RELOAD, UNKNOWN or None (no load)
    reload_cause: str | None = None
    behind: tuple[tuple[str, float], ...] = ()  # (model whose load it waited behind, seconds)
    scheduling_s: float = 0.0  # Ollama's own small part: a load_duration under the threshold, a rest under the floor

    @property
    def waiting_s(self) -> float | None:
        """Pending wait, drain and slot wait together; None if none of them is known."""
        parts = [self.pending_s, self.drain_s, self.slot_s]
        return None if all(part is None for part in parts) else sum(part or 0.0 for part in parts)


def wanted_options(options: Any) -> dict[str, Any]:
    """The runner options a request asks for (those it leaves out are Ollama's defaults)."""
    if not isinstance(options, Mapping):
        return {}
    return {name: options[name] for name in RUNNER_OPTIONS if name in options}


def _compare(wanted: dict[str, Any], runner: Runner, defaults: dict[str, Any]) -> tuple[str, str | None]:
    """("same" | "differ" | "unknown", the cause of a difference), option by option.

    An option one side leaves to Ollama is compared with Ollama's default for the model where
    /api/ps has shown it (a runner loaded without ``num_ctx`` reports its context length)."""
    changed, unknown = [], False
    asked = runner.asked
    for name in RUNNER_OPTIONS:
        if asked is not None and name in asked:
            loaded: Any = asked[name]
        elif name in runner.actual and (asked is None or name in wanted):
            loaded = runner.actual[name]
        elif asked is not None and name not in wanted:
            continue  # both Ollama's default
        else:
            loaded = defaults.get(name)
        value = wanted.get(name, defaults.get(name) if loaded is not None else None)
        if value is not None and loaded is not None:
            if value != loaded:
                changed.append(f"{name} {loaded} -> {value}")
        elif name in wanted or loaded is not None or asked is None:
            unknown = True  # one side is Ollama's default, whose value the proxy does not know
    if changed:
        return "differ", ", ".join(changed)
    return ("unknown", None) if unknown else ("same", None)


class SchedulerView:
    """The proxy's model of Ollama's scheduler, fed in request order from the bookkeeper."""

    def __init__(self, threshold_s: float = 0.1) -> None:
        self.threshold_s = threshold_s
        self._models: dict[str, ModelView] = {}
        self._queue: OrderedDict[int, Arrival] = OrderedDict()  # pending, in order, until handed over
        self._handed: OrderedDict[int, float | None] = OrderedDict()  # request -> hand-over (None: not reported)
        self._ended: OrderedDict[int, float] = OrderedDict()
        self._responded: OrderedDict[int, float] = OrderedDict()  # request -> its first chunk
        self._model_of: OrderedDict[int, str] = OrderedDict()
        self._waiting: list[tuple[Arrival, Any, Callable[[Decomposition], None]]] = []
        self._serial = 0
        self._ps_read = False  # before the first /api/ps, what is resident is unknown

    def model(self, name: str) -> ModelView:
        view = self._models.get(name)
        if view is None:
            view = self._models[name] = ModelView(resident=False if self._ps_read else None)
        return view

    def arrive(self, model: str, options: Any, at: float, now_epoch: float | None = None) -> Arrival:
        self._serial += 1
        serial = self._serial
        view = self.model(model)
        now_epoch = time.time() if now_epoch is None else now_epoch
        if view.resident and not view.in_flight and len(view.runners) == 1 and view.loaded() is not None \
                and view.expires_at is not None and now_epoch > view.expires_at:
            view.resident, view.runners = False, []  # expired since /api/ps was read
        view.in_flight[serial] = at
        self._model_of[serial] = model
        ahead = tuple(self._queue)
        if options is None:  # a body too large to read whole: its options are not known
            return self._queued(Arrival(serial, model, at, UNKNOWN, ahead=ahead))
        wanted = wanted_options(options)
        context_length = wanted.get("num_ctx") if isinstance(wanted.get("num_ctx"), int) else None
        loaded = view.loaded()
        if loaded is not None and _compare(wanted, loaded, view.defaults)[0] == "same":
            loaded.members.add(serial)
            for waiting in loaded.drains:  # joins the old runner while it drains: the reload waits for it too
                waiting.add(serial)
            return Arrival(serial, model, at, WARM, context_length=context_length or view.context_length, wanted=tuple(wanted.items()))
        newest = view.runners[-1] if view.runners else None
        cause, drains = None, frozenset()
        if newest is None and view.resident is None:
            kind = UNKNOWN
        elif newest is None:
            kind = COLD
        else:
            same, cause = _compare(wanted, newest, view.defaults)
            kind = JOINED if same == "same" else RELOAD if same == "differ" else UNKNOWN
        if kind == JOINED:
            assert newest is not None
            newest.members.add(serial)
            context_length = context_length or (newest.asked or {}).get("num_ctx")
        elif kind in (COLD, RELOAD):
            if kind == RELOAD and newest is not None:
                drains = set(newest.members)
                newest.drains.append(drains)
            view.runners.append(Runner(dict(wanted), loader=serial, members={serial}))
            view.context_length = context_length
        return self._queued(Arrival(serial, model, at, kind, cause, ahead, drains, context_length, tuple(wanted.items())))

    def _queued(self, arrival: Arrival) -> Arrival:
        self._queue[arrival.serial] = arrival
        return arrival

    def responded(self, arrival: Arrival, at: float) -> None:
        """The request's first chunk: it has been handed its runner, which is loaded (the runners before it are gone)."""
        if arrival.serial in self._queue:
            del self._queue[arrival.serial]
            self._responded[arrival.serial] = at
        view = self.model(arrival.model)
        for index, runner in enumerate(view.runners):
            if runner.loader == arrival.serial:
                runner.loader = None
                view.runners = view.runners[index:]
                view.resident = True
                return

    def end(self, arrival: Arrival, at: float, ok: bool, load_s: float | None) -> None:
        """The request is over; ``load_s``: the load_duration Ollama reported, if it did."""
        view = self.model(arrival.model)
        view.in_flight.pop(arrival.serial, None)
        for runner in view.runners:
            runner.members.discard(arrival.serial)
        if ok:
            self.responded(arrival, at)
            if arrival.kind != UNKNOWN:
                view.resident = True
        else:
            for index, runner in enumerate(view.runners):
                if runner.loader == arrival.serial:  # its load may not have happened: what is loaded is not known
                    del view.runners[index:]
                    view.resident = None
                    break
        self._queue.pop(arrival.serial, None)
        self._handed[arrival.serial] = None if load_s is None else arrival.arrived + load_s
        self._ended[arrival.serial] = at
        for remembered in (self._handed, self._ended, self._responded, self._model_of):
            while len(remembered) > REMEMBERED:
                remembered.popitem(last=False)
        self._settle_waiting()

    def observe_ps(self, listed: list[dict[str, Any]]) -> None:
        """Ollama's /api/ps (names already made canonical): what is resident now, its context length, its expiry."""
        seen = set()
        for entry in listed:
            name = entry.get("name") or entry.get("model")
            if not isinstance(name, str):
                continue
            seen.add(name)
            view = self.model(name)
            view.resident = True
            if not view.runners:
                view.runners = [Runner()]
            loaded = view.loaded()
            length = entry.get("context_length")
            if isinstance(length, int) and length > 0:
                view.context_length = length
                if loaded is not None:
                    loaded.actual["num_ctx"] = length
                    if loaded.asked is not None and "num_ctx" not in loaded.asked:
                        view.defaults["num_ctx"] = length  # loaded without num_ctx: Ollama's default for it
            view.expires_at = _epoch(entry.get("expires_at"))
        for name, view in self._models.items():
            if name not in seen and not view.in_flight and all(runner.loader is None for runner in view.runners):
                view.resident, view.runners = False, []
        self._ps_read = True

    # The account, at the end ---------------------------------------------------------------

    def settle(self, arrival: Arrival, report: Any, done: Callable[[Decomposition], None]) -> None:
        """Calls ``done`` with the request's decomposition once the requests ahead of it have ended
        (at once, usually). ``report``: Ollama's durations (load_s, prompt_eval_s, eval_s, total_s)."""
        load_s = getattr(report, "load_s", None)
        if load_s is not None and load_s >= self.threshold_s and arrival.kind in (JOINED, COLD, RELOAD) and self._unsettled(arrival):
            self._waiting.append((arrival, report, done))
            return
        done(self.decompose(arrival, report))

    def flush(self) -> None:
        """Settle everything still waiting (at shutdown): what is not known stays unknown."""
        waiting, self._waiting = self._waiting, []
        for arrival, report, done in waiting:
            done(self.decompose(arrival, report))

    def _unsettled(self, arrival: Arrival) -> bool:
        """Whether a request ahead of this one is still waiting or running, its hand-over not yet known."""
        return any(self._hand_over(serial, arrival.arrived, ended_only=True) is None for serial in arrival.ahead)

    def _settle_waiting(self) -> None:
        still = []
        for arrival, report, done in self._waiting:
            if self._unsettled(arrival):
                still.append((arrival, report, done))
            else:
                done(self.decompose(arrival, report))
        self._waiting = still

    def decompose(self, arrival: Arrival, report: Any) -> Decomposition:
        load_s = getattr(report, "load_s", None)
        slot_s, rest = _slot_wait(report)
        if load_s is None:
            return Decomposition(slot_s=slot_s, scheduling_s=rest)
        if load_s < self.threshold_s:
            return Decomposition(0.0, 0.0, 0.0, slot_s, scheduling_s=load_s + rest)  # no load, no wait
        reason = arrival.kind if arrival.kind in (COLD, RELOAD) else None
        if arrival.kind in (WARM, UNKNOWN):
            return Decomposition(slot_s=slot_s, unknown_s=load_s, load_reason=UNKNOWN, scheduling_s=rest)
        handed = [(self._hand_over(serial, arrival.arrived), serial) for serial in arrival.ahead]
        if any(at is None for at, _ in handed):
            return Decomposition(slot_s=slot_s, unknown_s=load_s, load_reason=UNKNOWN, reload_cause=arrival.cause, scheduling_s=rest)
        start = min(arrival.arrived + load_s, max([arrival.arrived, *(at for at, _ in handed)]))
        pending = start - arrival.arrived
        behind = self._behind(arrival, handed, start)
        if arrival.kind == JOINED:
            return Decomposition(load_s, 0.0, 0.0, slot_s, behind=behind, scheduling_s=rest)
        drain = 0.0
        if arrival.kind == RELOAD:
            ends = [self._ended.get(serial) for serial in arrival.drains]
            if any(end is None for end in ends):
                return Decomposition(slot_s=slot_s, unknown_s=load_s, load_reason=UNKNOWN, reload_cause=arrival.cause, scheduling_s=rest)
            drain = min(arrival.arrived + load_s, max([start, *ends])) - start
        return Decomposition(pending, drain, load_s - pending - drain, slot_s, load_reason=reason, reload_cause=arrival.cause, behind=behind, scheduling_s=rest)

    def _hand_over(self, serial: int, arrived: float, ended_only: bool = False) -> float | None:
        """When a request ahead was handed its runner: its arrival plus its load_duration. One that answered
        before ``arrived`` (or is long forgotten) was handed over before then; None: not known (with
        ``ended_only``: not known *yet*, the request has not ended)."""
        if serial not in self._model_of or self._responded.get(serial, math.inf) <= arrived:
            return arrived
        if serial not in self._handed:
            return None
        handed = self._handed[serial]
        return arrived if handed is None and ended_only else handed

    def _behind(self, arrival: Arrival, handed: list[tuple[float | None, int]], start: float) -> tuple[tuple[str, float], ...]:
        """The pending wait split among the requests ahead, each by the model it was for."""
        parts: dict[str, float] = {}
        cursor = arrival.arrived
        for at, serial in sorted(handed):  # type: ignore[type-var]  # no None here: the caller checked
            if at is None or at <= cursor:
                continue
            ahead = self._model_of.get(serial)
            slice_s = min(at, start) - cursor
            if ahead is not None and slice_s > 0:
                parts[ahead] = parts.get(ahead, 0.0) + slice_s
            cursor = max(cursor, min(at, start))
        return tuple(sorted(parts.items()))


def _slot_wait(report: Any) -> tuple[float | None, float]:
    """(the slot wait, Ollama's small rest): ``total − load − prompt_eval − eval``, a rest under the floor not a wait."""
    total = getattr(report, "total_s", None)
    load = getattr(report, "load_s", None)
    if total is None or load is None:
        return None, 0.0
    rest = max(0.0, total - load - (getattr(report, "prompt_eval_s", None) or 0.0) - (getattr(report, "eval_s", None) or 0.0))
    return (rest, 0.0) if rest >= SLOT_WAIT_FLOOR_S else (0.0, rest)


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def context_fill(input_tokens: int | None, output_tokens: int | None, context_length: int | None) -> float | None:
    """The share of the runner's context a request used (prompt plus output), or None if unknown."""
    if input_tokens is None or not context_length:
        return None
    used = input_tokens + (output_tokens or 0)
    return used / context_length if math.isfinite(used) else None
