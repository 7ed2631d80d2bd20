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
- An answer with no durations (the OpenAI and Anthropic APIs): its pending wait and drain come
  from the others' reports and ends as above (its load is not told apart), and its slot wait
  is replayed from the ends of the requests handed the same runner before it. Ollama's
  semaphore is first come first served, so with ``numParallel`` slots a request handed over at
  ``h`` starts at ``max(h, the numParallel-th latest end among those before it)``; those still
  running when it answered held a slot beside it (any beyond ``numParallel - 1`` of them reached
  Ollama after it, as near-simultaneous requests race from the proxy). The slot
  count is OLLAMA_NUM_PARALLEL (``--num-parallel``; one for MLX models and the architectures
  Ollama runs with one slot); it is not learnt from the measured waits, which a busy machine's
  own delays and requests racing to Ollama make unreliable in one request. A request loaded
  or joined with others ahead of it on a fresh runner has no known hand-over time: its slot
  wait is unknown.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ollama_otel_stack.go_time import unix_seconds

RUNNER_OPTIONS = ("num_ctx", "num_gpu", "num_batch", "main_gpu", "use_mmap", "num_thread")  # api.Runner
REMEMBERED = 4096  # requests whose hand-over and end times are kept for those queued behind them
SLOT_WAIT_FLOOR_S = 0.005
# server/sched.go Scheduler.load: architectures Ollama runs with one slot, whatever OLLAMA_NUM_PARALLEL says (ollama/ollama#4165)
SINGLE_SLOT_FAMILIES = frozenset({"mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe", "nemotron_h", "nemotron_h_moe", "nemotron_h_omni"})
WARM, JOINED, COLD, RELOAD, UNKNOWN = "warm", "joined", "cold", "reload", "unknown"
PENDING = (JOINED, COLD, RELOAD, UNKNOWN)  # kinds that go through Ollama's pending queue (unknown: may)
NOT_YET = object()  # a hand-over not known yet: the request has neither answered nor ended


@dataclass(slots=True)
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


@dataclass(slots=True)
class ModelView:
    resident: bool | None = None  # None: not known yet
    runners: list[Runner] = field(default_factory=list)  # the loaded one first (if any), then pending loads in order
    in_flight: dict[int, float] = field(default_factory=dict)  # request -> arrival (perf_counter)
    expires_at: float | None = None  # epoch seconds, from /api/ps read while the runner was idle (None: not known)
    last_end: float | None = None  # when its last request ended (perf_counter)
    context_length: int | None = None  # from /api/ps
    defaults: dict[str, Any] = field(default_factory=dict)  # Ollama's defaults for this model, learned from /api/ps
    one_slot: bool = False  # an MLX model (format safetensors) or an architecture Ollama runs with one slot
    loads: int = 0  # runners loaded as far as the view saw (cold, reload, or unknown: a long load_duration it did not foresee)
    last_load: str | None = None  # the last one's kind: each load a new llama-server, its prompt cache empty

    def slots(self, configured: int) -> int:
        return 1 if self.one_slot else configured

    def loaded(self) -> Runner | None:
        return self.runners[0] if self.runners and self.runners[0].loader is None else None


@dataclass(frozen=True, slots=True)
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
    company: tuple[int, ...] = ()  # requests in flight on the same runner, handed it before this one
    loader: int | None = None  # a joined request's: the request loading the runner it joined
    timed: bool = True  # on an API whose answers carry Ollama's durations (the native /api ones)


@dataclass(frozen=True, slots=True)
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


def changed_options(cause: str | None) -> str | None:
    """The names of the runner options a reload changed, ``num_ctx,num_gpu``: a bounded label (RUNNER_OPTIONS'
    subsets), where the cause itself (``num_ctx 4096 -> 8192``) carries a client's values."""
    if not cause:
        return None
    return ",".join(sorted({change.split(" ", 1)[0] for change in cause.split(", ")}))


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

    def __init__(self, threshold_s: float = 0.1, num_parallel: int = 1) -> None:
        self.threshold_s = threshold_s
        self.num_parallel = num_parallel  # OLLAMA_NUM_PARALLEL as the user gave it (Ollama's default: 1)
        self.on_load: Callable[[], None] = lambda: None  # a runner was just loaded: read /api/ps soon (its context length)
        self._models: dict[str, ModelView] = {}
        self._queue: OrderedDict[int, Arrival] = OrderedDict()  # pending, in order, until handed over
        self._handed: OrderedDict[int, float | None] = OrderedDict()  # request -> hand-over (None: not reported)
        self._ended: OrderedDict[int, float] = OrderedDict()
        self._responded: OrderedDict[int, float] = OrderedDict()  # request -> its first chunk
        self._arrivals: OrderedDict[int, Arrival] = OrderedDict()
        self._live: dict[int, Arrival] = {}  # requests not ended yet, as the view knows them now (never forgotten)
        self._waiting: list[tuple[Arrival, Any, Callable[[Decomposition], None]]] = []
        self._serial = 0
        self._ps_read = False  # before the first /api/ps, what is resident is unknown
        self.ps_reads = 0  # how many /api/ps answers the view has taken in

    def model(self, name: str) -> ModelView:
        view = self._models.get(name)
        if view is None:
            view = self._models[name] = ModelView(resident=False if self._ps_read else None)
        return view

    def arrive(self, model: str, options: Any, at: float, now_epoch: float | None = None, timed: bool = True) -> Arrival:
        """A request for ``model`` with these ``options``, arrived ``at``; ``timed``: its answer will carry durations."""
        arrival = self._classify(model, options, at, now_epoch, timed)
        self._arrivals[arrival.serial] = self._live[arrival.serial] = arrival
        if arrival.kind != WARM:
            self._queue[arrival.serial] = arrival
        return arrival

    def _classify(self, model: str, options: Any, at: float, now_epoch: float | None, timed: bool) -> Arrival:
        self._serial += 1
        serial = self._serial
        view = self.model(model)
        now_epoch = time.time() if now_epoch is None else now_epoch
        if view.resident and not view.in_flight and len(view.runners) == 1 and view.loaded() is not None \
                and view.expires_at is not None and now_epoch > view.expires_at:
            view.resident, view.runners = False, []  # expired since /api/ps was read
        view.in_flight[serial] = at
        ahead = tuple(self._queue)
        if options is None:  # a body too large to read whole: its options are not known
            return Arrival(serial, model, at, UNKNOWN, ahead=ahead, timed=timed)
        wanted = wanted_options(options)
        context_length = wanted.get("num_ctx") if isinstance(wanted.get("num_ctx"), int) else None
        loaded = view.loaded()
        if loaded is not None and _compare(wanted, loaded, view.defaults)[0] == "same":
            company = tuple(loaded.members)
            loaded.members.add(serial)
            for waiting in loaded.drains:  # joins the old runner while it drains: the reload waits for it too
                waiting.add(serial)
            return Arrival(serial, model, at, WARM, context_length=context_length or view.context_length, wanted=tuple(wanted.items()), company=company, timed=timed)
        newest = view.runners[-1] if view.runners else None
        cause, drains = None, frozenset()
        if newest is None and view.resident is None:
            kind = UNKNOWN
        elif newest is None:
            kind = COLD
        else:
            same, cause = _compare(wanted, newest, view.defaults)
            kind = JOINED if same == "same" else RELOAD if same == "differ" else UNKNOWN
        company: tuple[int, ...] = ()
        loader = None
        if kind == JOINED:
            assert newest is not None
            company, loader = tuple(newest.members), newest.loader
            newest.members.add(serial)
            context_length = context_length or (newest.asked or {}).get("num_ctx")
        elif kind in (COLD, RELOAD):
            if kind == RELOAD and newest is not None:
                drains = set(newest.members)
                newest.drains.append(drains)
            view.runners.append(Runner(dict(wanted), loader=serial, members={serial}))
            view.context_length = context_length
        return Arrival(serial, model, at, kind, cause, ahead, drains, context_length, tuple(wanted.items()), company, loader, timed)

    def responded(self, serial: int, at: float) -> None:
        """The request's first chunk: it has been handed its runner, which is loaded (the runners before it are gone)."""
        arrival = self._live.get(serial)
        if arrival is not None:  # else it has ended, and was counted as answered then
            self._answered(arrival, at)

    def _answered(self, arrival: Arrival, at: float) -> None:
        self._responded.setdefault(arrival.serial, at)
        if arrival.serial in self._queue:
            del self._queue[arrival.serial]
            self._retire_drained()
        view = self.model(arrival.model)
        for index, runner in enumerate(view.runners):
            if runner.loader == arrival.serial:
                runner.loader = None
                gone, view.runners = view.runners[:index], view.runners[index:]
                view.resident = True
                view.loads += 1
                view.last_load = arrival.kind
                self.on_load()
                if arrival.kind == RELOAD:
                    self._requeue_late_joiners(view, gone, runner, arrival.serial)
                return

    def _requeue_late_joiners(self, view: ModelView, gone: list[Runner], loaded: Runner, reload: int) -> None:
        """Requests still in flight on a runner a reload has replaced never ran on it: they reached Ollama after
        it had drained, in the instant before the proxy could know, and waited in the pending queue behind
        the reload. The first of them reloads the old options back (draining the new runner), the rest join it."""
        late = sorted(serial for runner in gone for serial in runner.members if serial in self._arrivals and serial not in self._responded)
        if not late:
            return
        first = self._arrivals[late[0]]
        wanted = dict(first.wanted)
        cause = _compare(wanted, loaded, view.defaults)[1]
        drains: set[int] = set(loaded.members)
        loaded.drains.append(drains)
        back = Runner(wanted, loader=first.serial, members=set(late))
        view.runners.append(back)
        ahead = tuple(serial for serial in self._queue if serial < first.serial) + (reload,)  # and the reload they waited behind
        for serial in late:
            was = self._arrivals[serial]
            if serial == first.serial:
                now = replace(was, kind=RELOAD, cause=cause, ahead=ahead or was.ahead, drains=drains, company=())
            else:
                now = replace(was, kind=JOINED, ahead=tuple(sorted({*ahead, first.serial})), loader=first.serial, company=tuple(s for s in late if s < serial))
            self._arrivals[serial] = self._queue[serial] = self._live[serial] = now

    def _retire_drained(self) -> None:
        """A loaded runner that a reload waits on is unloaded once that reload's turn has come (nothing ahead of
        it in the pending queue) and its last request has ended: from then on a request with its options finds
        no runner, and goes to the pending queue behind the reload (server/sched.go processPending)."""
        for view in self._models.values():
            while len(view.runners) > 1 and view.runners[0].loader is None and not view.runners[0].members:
                reload = self._arrivals.get(view.runners[1].loader or -1)
                if reload is None or any(serial in self._queue for serial in reload.ahead):
                    break
                view.runners.pop(0)

    def end(self, serial: int, at: float, ok: bool, load_s: float | None) -> Arrival:
        """The request is over; ``load_s``: the load_duration Ollama reported, if it did. Returns its arrival as the
        view knows it now (a late joiner's is requeued), the one to settle."""
        arrival = self._live.pop(serial)
        view = self.model(arrival.model)
        view.in_flight.pop(arrival.serial, None)
        view.last_end, view.expires_at = at, None  # Ollama sets the expiry afresh when the runner goes idle
        for runner in view.runners:
            runner.members.discard(arrival.serial)
        if ok:
            self._answered(arrival, at)
            if arrival.kind != UNKNOWN:
                view.resident = True
            elif load_s is not None and load_s >= self.threshold_s:  # a load the view did not foresee (or a wait): a new runner, maybe
                view.loads += 1
                view.last_load = UNKNOWN
        else:
            for index, runner in enumerate(view.runners):
                if runner.loader == arrival.serial:  # its load may not have happened: what is loaded is not known
                    del view.runners[index:]
                    view.resident = None
                    break
        self._queue.pop(arrival.serial, None)
        self._retire_drained()
        if not view.in_flight and not view.runners and not view.resident and not view.defaults and view.context_length is None:
            del self._models[arrival.model]  # nothing learnt of it (a name Ollama does not have): kept no longer than its requests
        self._handed[arrival.serial] = None if load_s is None else arrival.arrived + load_s
        self._ended[arrival.serial] = at
        for remembered in (self._handed, self._ended, self._responded, self._arrivals):
            while len(remembered) > REMEMBERED:
                remembered.popitem(last=False)
        self._settle_waiting()
        return arrival

    def observe_ps(self, listed: list[dict[str, Any]], read_at: float | None = None) -> None:
        """Ollama's /api/ps (names already made canonical), asked for at ``read_at`` (perf_counter): what is
        resident now, its context length, its expiry."""
        seen = set()
        for entry in listed:
            name = entry.get("name") or entry.get("model")
            if not isinstance(name, str):
                continue
            seen.add(name)
            view = self.model(name)
            view.resident = True
            details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
            view.one_slot = details.get("format") == "safetensors" or details.get("family") in SINGLE_SLOT_FAMILIES
            if not view.runners:
                view.runners = [Runner()]
            loaded = view.loaded()
            if loaded is None and len(view.runners) == 1:
                loaded = view.runners[0]  # a cold load whose first answer the proxy has not seen yet: /api/ps says it is done
                loaded.loader = None
            length = entry.get("context_length")
            if isinstance(length, int) and length > 0:
                view.context_length = length
                if loaded is not None:
                    loaded.actual["num_ctx"] = length
                    if loaded.asked is not None and "num_ctx" not in loaded.asked:
                        view.defaults["num_ctx"] = length  # loaded without num_ctx: Ollama's default for it
            # Ollama sets expires_at when the runner goes idle (server/sched.go processCompleted): a read made
            # while requests ran on it, or since one ended, says nothing of when it will expire
            quiet = not view.in_flight and (read_at is None or view.last_end is None or view.last_end < read_at)
            view.expires_at = unix_seconds(entry.get("expires_at")) if quiet else None
        for name, view in self._models.items():
            if name not in seen and not view.in_flight and all(runner.loader is None for runner in view.runners):
                view.resident, view.runners = False, []
        self._ps_read = True
        self.ps_reads += 1

    # The account, at the end ---------------------------------------------------------------

    def settle(self, arrival: Arrival, report: Any, done: Callable[[Decomposition], None], answered_at: float | None = None) -> None:
        """Calls ``done`` with the request's decomposition once the requests ahead of it have ended
        (at once, usually). ``report``: Ollama's durations (load_s, prompt_eval_s, eval_s, total_s);
        ``answered_at``: its first output (or its end), which bounds an answer without durations."""
        arrival = self._arrivals.get(arrival.serial, arrival)  # as the view now knows it (late joiners are requeued)
        load_s = getattr(report, "load_s", None)
        if (load_s is None or load_s >= self.threshold_s) and arrival.kind in (JOINED, COLD, RELOAD) and self._unsettled(arrival):
            self._waiting.append((arrival, (report, answered_at), done))
            return
        done(self.decompose(arrival, report, answered_at))

    def flush(self) -> None:
        """Settle everything still waiting (at shutdown): what is not known stays unknown."""
        waiting, self._waiting = self._waiting, []
        for arrival, (report, answered_at), done in waiting:
            done(self.decompose(arrival, report, answered_at))

    def _unsettled(self, arrival: Arrival) -> bool:
        """Whether a request ahead of this one is still waiting or running, its hand-over not yet known."""
        return any(self._hand_over(serial, arrival.arrived) is NOT_YET for serial in arrival.ahead)

    def _settle_waiting(self) -> None:
        still = []
        for arrival, (report, answered_at), done in self._waiting:
            if self._unsettled(arrival):
                still.append((arrival, (report, answered_at), done))
            else:
                done(self.decompose(arrival, report, answered_at))
        self._waiting = still

    def decompose(self, arrival: Arrival, report: Any, answered_at: float | None = None) -> Decomposition:
        load_s = getattr(report, "load_s", None)
        slot_s, rest = _slot_wait(report)
        if load_s is None:
            return self._without_durations(arrival, answered_at)
        if load_s < self.threshold_s:
            return Decomposition(0.0, 0.0, 0.0, slot_s, scheduling_s=load_s + rest)  # no load, no wait
        reason = arrival.kind if arrival.kind in (COLD, RELOAD) else None
        if arrival.kind in (WARM, UNKNOWN):
            return Decomposition(slot_s=slot_s, unknown_s=load_s, load_reason=UNKNOWN, scheduling_s=rest)
        handed = [(self._hand_over(serial, arrival.arrived), serial) for serial in arrival.ahead]
        if any(at is None or at is NOT_YET for at, _ in handed):
            return Decomposition(slot_s=slot_s, unknown_s=load_s, load_reason=UNKNOWN, reload_cause=arrival.cause, scheduling_s=rest)
        start = min(arrival.arrived + load_s, max([arrival.arrived, *(at for at, _ in handed)]))
        pending = start - arrival.arrived
        behind = self._behind(arrival, handed, start)
        if arrival.kind == JOINED:
            return Decomposition(load_s, 0.0, 0.0, slot_s, behind=behind, scheduling_s=rest)
        drain = 0.0
        if arrival.kind == RELOAD:
            drain = self._drain_end(arrival, start, arrival.arrived + load_s) - start
        return Decomposition(pending, drain, load_s - pending - drain, slot_s, load_reason=reason, reload_cause=arrival.cause, behind=behind, scheduling_s=rest)

    def _without_durations(self, arrival: Arrival, answered_at: float | None) -> Decomposition:
        """An answer Ollama did not time: the waits that the others' reports and ends tell, the load not told apart."""
        if arrival.kind == UNKNOWN or answered_at is None:
            return Decomposition()
        if arrival.kind == WARM:
            return Decomposition(0.0, 0.0, 0.0, self._replayed_slot(arrival, arrival.arrived, answered_at))  # handed over at once
        handed = [(self._hand_over(serial, arrival.arrived), serial) for serial in arrival.ahead]
        if any(at is None or at is NOT_YET for at, _ in handed):
            return Decomposition(load_reason=arrival.kind if arrival.kind != JOINED else None, reload_cause=arrival.cause)
        start = min(answered_at, max([arrival.arrived, *(at for at, _ in handed)]))  # type: ignore[type-var]
        behind = self._behind(arrival, handed, start)
        if arrival.kind == JOINED:  # waits for the load it joined, which is ahead of it; its own load is none
            return Decomposition(start - arrival.arrived, 0.0, 0.0, self._replayed_slot(arrival, start, answered_at), behind=behind)
        drain: float | None = 0.0
        if arrival.kind == RELOAD:
            drain = self._drain_end(arrival, start, answered_at) - start  # type: ignore[arg-type]
        # the first on its runner: no slot wait, and its load is not told apart from its prompt evaluation
        return Decomposition(start - arrival.arrived, drain, None, 0.0, load_reason=arrival.kind, reload_cause=arrival.cause, behind=behind)

    def _drain_end(self, arrival: Arrival, start: float, handed: float) -> float:
        """When the last request on the runner a reload replaced ended (no earlier than ``start``).

        Those that had not ended by the reload's hand-over were never on that runner in Ollama: they
        reached it after it had drained, in the instant before the proxy could know (Ollama drops a
        request from the runner as its handler returns, the proxy when the last byte has passed)."""
        ends = [end for end in (self._ended.get(serial) for serial in arrival.drains) if end is not None and end <= handed]
        return min(handed, max([start, *ends]))

    def _replayed_slot(self, arrival: Arrival, handed: float, answered_at: float) -> float:
        """The wait for a slot of a request handed its runner at ``handed`` and answering at ``answered_at``, from
        the ends of those handed it before (Ollama's slots are a FIFO semaphore: it runs once fewer than the
        slots of them are left).

        Those still running at its answer held a slot beside it, at most ``slots - 1`` of them: any more reached
        Ollama after it (near-simultaneous requests race from the proxy), and only the ends before its answer
        can have freed the slot it took."""
        slots = self.model(arrival.model).slots(self.num_parallel)
        company = [serial for serial in arrival.company if serial in self._arrivals]  # long-forgotten ones ended long ago
        ends = sorted((self._ended.get(serial, math.inf) for serial in company), reverse=True)
        earlier = [end for end in ends if end <= answered_at]
        beside = min(len(ends) - len(earlier), slots - 1)
        needed = slots - beside  # the earlier ends, latest first, until one frees its slot
        if len(earlier) < needed:
            return 0.0
        return max(0.0, earlier[needed - 1] - handed)

    def _hand_over(self, serial: int, arrived: float) -> Any:
        """When a request ahead was handed its runner (seconds), None when that cannot be known, NOT_YET
        while it may still be learnt.

        A timed request: its arrival plus its load_duration. One that answered before ``arrived`` (or is
        long forgotten) was handed over before then. An untimed load (the OpenAI and Anthropic APIs):
        its first chunk, which is later by its prompt evaluation and first token (milliseconds: the
        pending wait of those behind it is overstated by as much); so is an untimed one of unknown
        kind. An untimed request that joined a
        load: that load's hand-over, or its own arrival if later.
        """
        ahead = self._arrivals.get(serial)
        responded = self._responded.get(serial)
        if ahead is None or (responded is not None and responded <= arrived):
            return arrived
        handed = self._handed.get(serial)
        if handed is not None:
            return handed
        if not ahead.timed or serial in self._handed:  # untimed, or timed and ended without a load_duration
            if ahead.kind == JOINED and ahead.loader is not None:
                loaded = self._hand_over(ahead.loader, arrived)
                return loaded if loaded is None or loaded is NOT_YET else max(ahead.arrived, loaded)
            if ahead.kind in (COLD, RELOAD, UNKNOWN) and responded is not None:
                return responded  # handed over by its first chunk: a load, or (unknown) perhaps no wait at all
            if serial in self._handed:
                return None
        return NOT_YET

    def _behind(self, arrival: Arrival, handed: list[tuple[float | None, int]], start: float) -> tuple[tuple[str, float], ...]:
        """The pending wait split among the requests ahead, each by the model it was for."""
        parts: dict[str, float] = {}
        cursor = arrival.arrived
        for at, serial in sorted(handed):  # type: ignore[type-var]  # no None here: the caller checked
            if at is None or at <= cursor:
                continue
            ahead = self._arrivals[serial].model if serial in self._arrivals else None
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


DEFAULT_NUM_KEEP = 4  # api.DefaultOptions NumKeep


def cut_to_fit(input_tokens: int | None, context_length: int | None, num_keep: int = DEFAULT_NUM_KEEP) -> bool:
    """Whether a prompt has the length Ollama cuts a too-long prompt to (llm/llama_server.go completionPromptForRequest:
    ``num_keep`` tokens, one more where the tokenizer adds BOS, and the tail, ``contextShiftPromptLimit`` long)."""
    if input_tokens is None or not context_length or context_length <= 1:
        return False
    for keep in (num_keep, num_keep + 1):
        keep = max(0, min(keep, context_length - 1))
        if input_tokens == context_length - max((context_length - keep) // 2, 1):
            return True
    return False


def context_fill(input_tokens: int | None, output_tokens: int | None, context_length: int | None) -> float | None:
    """The share of the runner's context a request used (prompt plus output), or None if unknown."""
    if input_tokens is None or not context_length:
        return None
    used = input_tokens + (output_tokens or 0)
    return used / context_length if math.isfinite(used) else None
