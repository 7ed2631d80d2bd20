"""What the proxy can tell of Ollama's scheduler: which part of ``load_duration`` was waiting, loading or reloading.

Ollama's ``load_duration`` runs from the start of its handler to the moment the scheduler
hands over a runner slot (server/routes.go): it holds the wait for a free slot of a loaded
runner (OLLAMA_NUM_PARALLEL), a cold load, and a reload when the request's runner options
(``num_ctx``, ``num_gpu`` … api.Runner) differ from the loaded runner's. The proxy sees
every request to the model, their options and when each ended, and Ollama's ``/api/ps``
(resident models, ``context_length``, ``expires_at``), read off the hot path. The rule,
written down in docs/metrics.md:

- When a request arrives, the model is *resident* (a runner with known options), *not
  resident*, or *unknown* (the proxy has not yet read /api/ps, or its view cannot say).
- Arriving at a model that is not resident, the request starts a **cold** load; at a
  resident model whose runner options differ from the request's, a **reload** (the cause
  names the options, e.g. ``num_ctx 4096 -> 8192``). Another request arriving while that
  load runs, with the same options, joins it: it waits, it does not load.
- At the end, a ``load_duration`` under the threshold (0.1 s) was no load, whatever was
  predicted: all of it is queue wait (scheduling). Above it, a request that started a load
  spent it loading, except a reload's wait for the old runner's requests to finish (from
  its arrival to the last of them ending), which is queue wait. A request that found its
  runner resident, or joined a load, spent all of it waiting.
- A long ``load_duration`` the view did not predict (a resident model with nothing in flight,
  or any unknown) is reported as ``unknown``: neither queue nor load is guessed.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RUNNER_OPTIONS = ("num_ctx", "num_gpu", "num_batch", "main_gpu", "use_mmap", "num_thread")  # api.Runner
REMEMBERED_ENDS = 4096
COLD, RELOAD, UNKNOWN = "cold", "reload", "unknown"


@dataclass
class Runner:
    """The loaded runner as far as the proxy knows it.

    ``asked``: the runner options of the request it was loaded for (those left out were
    Ollama's defaults), or None when the proxy did not see it loaded; ``actual``: values
    read from /api/ps (``num_ctx`` from ``context_length``).
    """

    asked: dict[str, Any] | None = None
    actual: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelView:
    resident: bool | None = None  # None: not known yet
    runner: Runner | None = None
    loading: int | None = None  # the request that is loading (or reloading) it
    in_flight: dict[int, float] = field(default_factory=dict)  # request -> arrival (perf_counter)
    expires_at: float | None = None  # epoch seconds, from /api/ps
    context_length: int | None = None  # from /api/ps


@dataclass(frozen=True)
class Arrival:
    serial: int
    model: str
    arrived: float
    kind: str  # "resident", "joined" (a load in progress), COLD, RELOAD or UNKNOWN
    cause: str | None = None
    waited_on: tuple[int, ...] = ()  # a reload's: the old runner's requests in flight
    context_length: int | None = None
    company: int = 0  # other requests for the model in flight at arrival
    wanted: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Decomposition:
    """``load_duration`` in parts; None where the proxy cannot tell (then ``load_reason`` is "unknown")."""

    queue_wait_s: float | None
    load_s: float | None
    load_reason: str | None  # COLD, RELOAD, UNKNOWN or None (no load)
    reload_cause: str | None = None


def wanted_options(options: Any) -> dict[str, Any]:
    """The runner options a request asks for (those it leaves out are Ollama's defaults)."""
    if not isinstance(options, Mapping):
        return {}
    return {name: options[name] for name in RUNNER_OPTIONS if name in options}


def _compare(wanted: dict[str, Any], runner: Runner) -> tuple[str, str | None]:
    """("same" | "differ" | "unknown", the cause of a difference), option by option."""
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
            loaded = None
        if name in wanted and loaded is not None:
            if wanted[name] != loaded:
                changed.append(f"{name} {loaded} -> {wanted[name]}")
        elif name in wanted or loaded is not None or asked is None:
            unknown = True  # one side is Ollama's default, whose value the proxy does not know
    if changed:
        return "differ", ", ".join(changed)
    return ("unknown", None) if unknown else ("same", None)


class SchedulerView:
    """The proxy's model of Ollama's scheduler, fed in request order from the bookkeeper."""

    def __init__(self) -> None:
        self._models: dict[str, ModelView] = {}
        self._ended: OrderedDict[int, float] = OrderedDict()
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
        wanted = wanted_options(options)
        if options is None:  # a body too large to read whole: its options are not known
            company = len(view.in_flight)
            view.in_flight[serial] = at
            return Arrival(serial, model, at, UNKNOWN, company=company)
        now_epoch = time.time() if now_epoch is None else now_epoch
        if view.resident and not view.in_flight and view.loading is None and view.expires_at is not None and now_epoch > view.expires_at:
            view.resident, view.runner = False, None  # expired since /api/ps was read
        context_length = wanted.get("num_ctx") if isinstance(wanted.get("num_ctx"), int) else None
        if view.loading is not None and view.runner is not None:
            same, cause = _compare(wanted, view.runner)
            kind = "joined" if same == "same" else RELOAD if same == "differ" else UNKNOWN
        elif view.resident is None:
            kind, cause = UNKNOWN, None
        elif not view.resident or view.runner is None:
            kind, cause = COLD, None
        else:
            same, cause = _compare(wanted, view.runner)
            kind = "resident" if same == "same" else RELOAD if same == "differ" else UNKNOWN
        waited_on: tuple[int, ...] = ()
        if kind in (COLD, RELOAD):
            waited_on = tuple(view.in_flight) if kind == RELOAD else ()
            view.loading = serial
            view.runner = Runner(dict(wanted))
            view.context_length = context_length
        if context_length is None and kind in ("resident", "joined"):
            context_length = view.context_length
        company = len(view.in_flight)
        view.in_flight[serial] = at
        return Arrival(serial, model, at, kind, cause, waited_on, context_length, company, tuple(wanted.items()))

    def end(self, arrival: Arrival, at: float, ok: bool, ran_on_the_runner: bool = False) -> None:
        """The request is over. ``ran_on_the_runner``: it found a runner without loading one, so the
        runner's options are the ones it asked for (how a view read from /api/ps learns them)."""
        view = self.model(arrival.model)
        view.in_flight.pop(arrival.serial, None)
        if ran_on_the_runner and ok and view.runner is not None and view.loading is None:
            view.runner.asked = dict(arrival.wanted)
        if view.loading == arrival.serial:
            view.loading = None
            view.resident = True if ok else None
        elif ok and arrival.kind != UNKNOWN:
            view.resident = True
        self._ended[arrival.serial] = at
        if len(self._ended) > REMEMBERED_ENDS:
            self._ended.popitem(last=False)

    def observe_ps(self, listed: list[dict[str, Any]]) -> None:
        """Ollama's /api/ps: what is resident now, its context length and when it expires."""
        seen = set()
        for entry in listed:
            name = entry.get("name") or entry.get("model")
            if not isinstance(name, str):
                continue
            seen.add(name)
            view = self.model(name)
            view.resident = True
            if view.runner is None:
                view.runner = Runner()
            length = entry.get("context_length")
            if isinstance(length, int) and length > 0:
                view.context_length = length
                if view.loading is None:
                    view.runner.actual["num_ctx"] = length
            view.expires_at = _epoch(entry.get("expires_at"))
        for name, view in self._models.items():
            if name not in seen and not view.in_flight and view.loading is None:
                view.resident, view.runner = False, None
        self._ps_read = True

    def decompose(self, arrival: Arrival, load_duration_s: float | None, threshold_s: float) -> Decomposition:
        if load_duration_s is None:
            return Decomposition(None, None, None)
        if load_duration_s < threshold_s:
            return Decomposition(load_duration_s, 0.0, None)  # no load: scheduling and any short wait
        if arrival.kind in (COLD, RELOAD):
            queue = 0.0
            ends = [self._ended[serial] for serial in arrival.waited_on if serial in self._ended]
            if arrival.waited_on and len(ends) == len(arrival.waited_on):
                queue = min(load_duration_s, max(0.0, max(ends) - arrival.arrived))
            elif arrival.waited_on:
                return Decomposition(None, None, UNKNOWN, arrival.cause)
            return Decomposition(queue, load_duration_s - queue, arrival.kind, arrival.cause)
        if arrival.kind == "joined" or (arrival.kind == "resident" and arrival.company):
            return Decomposition(load_duration_s, 0.0, None)
        return Decomposition(None, None, UNKNOWN)


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
