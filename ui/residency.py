"""Which model was resident when, and why it went: the residency timeline (no Streamlit here; ui/usage_view.py draws it).

It is read from two records Prometheus keeps:

- the collector's /api/ps samples: a model is resident while ``ollama_loaded_model_size_bytes`` lists it, and
  ``ollama_loaded_model_expiry_seconds`` says when Ollama meant to unload it;
- the proxy's load counts, ``ollama_model_loads_total``: cold or reload, and the runner options a reload changed.

A stay runs from the first sample that listed the model to the last, so its ends are as exact as the samples
(the collector's interval plus the scrape's). Over days (steps of an hour or more) the three are read from
recording.yml's hourly records of them (``ollama-residency``), so a month costs Prometheus one point a series an
hour, not every scrape; the samples are read only around the records (the last hour or two, not recorded yet).

How a stay ends, read as Ollama's scheduler works (server/sched.go):

- ``resident``: still listed at the range's end;
- ``reloaded``: listed again straight after a reload of it (its runner options changed: the old runner drains, is
  unloaded, and the new one loads);
- ``expired``: it went when its expiry came: keep_alive ran out since its last request (processCompleted). Where
  the samples are too coarse to tell (the expiry falls within their lag of the departure), an expiry already past
  at its last sample wins, then another model's load that began as it went (an eviction), then the expiry;
- ``evicted``: it went before its expiry while another model was loaded on the same host (its stay began within
  ``LOAD_WINDOW_S``) (processPending makes room
  at OLLAMA_MAX_LOADED_MODELS or when the new model does not fit, findRunnerToUnload); ``by`` names that model;
- ``unloaded``: it went before its expiry with no other model loaded beside it (``ollama stop``, a restart, a
  runner that failed).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field

from ui.queries import RECORDED_BY, Filters, Prometheus, quote_label

RESIDENT, RELOADED, EXPIRED, EVICTED, UNLOADED = "resident", "reloaded", "expired", "evicted", "unloaded"
ENDINGS = (RESIDENT, RELOADED, EXPIRED, EVICTED, UNLOADED)
BEFORE = "before the range"  # resident when the range began: its load is outside it
NOT_SEEN = "not seen"  # no load counted by the proxy: loaded by a client that does not go through it
POINTS = 720  # steps a range is cut into: a chart's width in points
FINE_STEP_S = 60.0  # up to this step a sample is read as it is; above it, any sample in the step counts
LOAD_WINDOW_S = 120.0  # a load takes at most this long: the stay that begins within it after one went is the load that pushed it out
LAG_STEPS = 2  # a sample is the collector's reading (its interval) scraped later (the scrape's): up to two steps behind
HOUR_S = 3600  # recording.yml records each clock hour: steps of an hour or more read the records
RECORDS = {"resident": "ollama:model_resident:max1h", "expiry": "ollama:model_expiry:max1h", "loads": "ollama:model_loads:increase1h"}
NICE_STEPS_S = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass(frozen=True)
class Load:
    host: str
    model: str
    at: float  # the step the proxy counted it in: when the loading request ended (unix seconds)
    reason: str  # cold or reload
    cause: str | None  # a reload's: the runner options that changed
    count: int


@dataclass
class Stay:
    host: str
    model: str
    start: float  # the first sample that listed it (unix seconds)
    end: float  # the last sample that listed it
    loaded: str = NOT_SEEN  # cold, reload, BEFORE or NOT_SEEN
    cause: str | None = None  # a reload's: the runner options that changed
    ended: str = RESIDENT  # one of ENDINGS
    by: str | None = None  # evicted: the model whose load pushed it out
    loads: list[Load] = field(default_factory=list)  # loads counted while it stayed listed (a reload between two samples)


def step_for(seconds: float) -> float:
    """A step that cuts the range into about POINTS, rounded to a step a person reads."""
    wanted = seconds / POINTS
    return next((step for step in NICE_STEPS_S if step >= wanted), NICE_STEPS_S[-1])


def host_of(instance: str) -> str:
    return re.sub(r":[0-9]+$", "", instance)


def queries(f: Filters, step: float) -> dict[str, str]:
    """The three series the timeline is built from, at ``step``: presence, expiry, loads counted in each step."""
    collector = f.labels(f.collector, model_label="model")
    window = f"{round(step * 1000)}ms"  # PromQL durations take no fractions

    def sampled(metric: str) -> str:
        series = f"{metric}{collector}"
        return f"max by (instance, model) ({series if step <= FINE_STEP_S else f'max_over_time({series}[{window}])'})"

    return {
        "resident": sampled("ollama_loaded_model_size_bytes"),
        "expiry": sampled("ollama_loaded_model_expiry_seconds"),
        # the counter itself at each step (the loads in a step are told in Python, ``_counted``: PromQL's set operators
        # for a series born in the step cost a 30-day view more than the rest of it, docs/benchmarks.md)
        "loads": f"sum by (instance, gen_ai_request_model, ollama_load_reason, ollama_load_cause) (ollama_model_loads_total{f.labels(f.proxy)})",
    }


def recorded_queries(f: Filters, step: float) -> dict[str, str]:
    """The same three series from recording.yml's hourly records (``ollama-residency``), summed over ``step`` (whole
    hours): each point holds the hours that end in the step, read an hour later (``RECORDED_BY``), once recorded."""
    window = f"{round(step)}s"

    def selector(record: str, model_label: str) -> str:
        matchers = ([f'host="{quote_label(host_of(f.host))}"'] if f.host else []) + ([f'{model_label}="{quote_label(f.model)}"'] if f.model else [])
        return record + "{" + ",".join(matchers) + "}"

    return {
        "resident": f"max by (host, model) (max_over_time({selector(RECORDS['resident'], 'model')}[{window}]))",
        "expiry": f"max by (host, model) (max_over_time({selector(RECORDS['expiry'], 'model')}[{window}]))",
        "loads": f"sum by (host, gen_ai_request_model, ollama_load_reason, ollama_load_cause) "
                 f"(sum_over_time({selector(RECORDS['loads'], 'gen_ai_request_model')}[{window}]))",
    }


@dataclass
class _Read:
    """What the three series said, by (host, model): the steps it was listed at, its expiry at each, and the loads."""

    listed: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    expiries: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    loads: list[Load] = field(default_factory=list)

    def add(self, got: dict[str, list], counted: bool, since: float, step: float) -> None:
        """``got``: each series' points, read raw (by instance; the loads as the counter, ``counted`` from ``since``)
        or from the records (by host; the loads already counted in each step)."""
        for series in got["resident"]:
            self.listed[_key(series.labels, "model")].extend(t for t, v in series.points if v is not None)
        for series in got["expiry"]:
            self.expiries[_key(series.labels, "model")].extend((t, v) for t, v in series.points if v is not None)
        for series in got["loads"]:
            host, model = _key(series.labels, "gen_ai_request_model")
            points = _counted(series.points, step, since) if counted else [(t, round(v)) for t, v in series.points if v is not None and round(v) > 0]
            self.loads.extend(Load(host, model, t, series.labels.get("ollama_load_reason", ""), series.labels.get("ollama_load_cause") or None, count)
                              for t, count in points)


def _key(labels: dict[str, str], model_label: str) -> tuple[str, str]:
    return labels.get("host") or host_of(labels.get("instance", "")), labels.get(model_label, "")


def timeline(prom: Prometheus, f: Filters, start: float, end: float, step: float | None = None, recorded: bool = True) -> tuple[list[Stay], list[Load]]:
    """Every stay of every model in ``[start, end]``, and the loads the proxy counted, oldest first.

    Steps of an hour or more fall on whole multiples of the step (UTC) and are read from recording.yml's hourly records
    where there are any (``recorded``), the samples themselves before the first record and after the last (the hour or
    two not recorded yet, or a range older than the rules); finer steps read the samples at whole multiples of the step
    too, from ``start`` to ``end``."""
    step = step or step_for(end - start)
    read = _Read()
    if step < HOUR_S:  # the same grid at every rerun, so that a page redrawn a moment later draws the same bars
        last = end // step * step
        _read_raw(prom, f, read, -(-start // step) * step, last, step)
    else:
        first, last = (start // step + 1) * step, -(-end // step) * step  # the steps whose windows hold start and end
        covered = _read_recorded(prom, f, read, first, last, step) if recorded and step % HOUR_S == 0 else None
        gaps = [(first, last)] if covered is None else [(a, b) for a, b in ((first, covered[0] - step), (covered[1] + step, last)) if a <= b]
        for a, b in gaps:
            _read_raw(prom, f, read, a, b, step)
    stays = []
    for (host, model), listed in read.listed.items():
        stays.extend(_stays(host, model, sorted(listed), step))
    stays.sort(key=lambda stay: (stay.start, stay.model))
    loads = sorted(read.loads, key=lambda load: load.at)
    _explain(stays, loads, {key: sorted(points) for key, points in read.expiries.items()}, start, last, step)  # resident: listed at the last step
    return stays, loads


def _read_raw(prom: Prometheus, f: Filters, read: _Read, start: float, end: float, step: float) -> None:
    promql = queries(f, step)
    got = prom.side_by_side({name: (lambda q=q, name=name: prom.range(q, start - (step if name == "loads" else 0), end, step)) for name, q in promql.items()})
    read.add(got, True, start, step)


def _read_recorded(prom: Prometheus, f: Filters, read: _Read, first: float, last: float, step: float) -> tuple[float, float] | None:
    """The records' points at the steps ``first`` to ``last``; the first and last step any record holds, or None."""
    promql = recorded_queries(f, step)
    got = prom.side_by_side({name: (lambda q=q: prom.range(q, first + RECORDED_BY, last + RECORDED_BY, step)) for name, q in promql.items()})
    for series in (series for found in got.values() for series in found):
        series.points[:] = [(round(t - RECORDED_BY), v) for t, v in series.points]
    steps = [t for found in got.values() for series in found for t, v in series.points if v is not None]
    if not steps:
        return None
    read.add(got, False, first, step)
    return min(steps), max(steps)


def _counted(points: list[tuple[float, float | None]], step: float, start: float) -> list[tuple[float, int]]:
    """(step, loads counted in it) from a counter's value at each step from the one before ``start``: the rise since
    the step before; from zero where it was absent the step before (new, or back after a restart) or fell (a reset)."""
    counted: list[tuple[float, int]] = []
    before: tuple[float, float] | None = None
    for at, value in points:
        if value is None:
            continue
        if before is not None and abs(at - before[0] - step) < step / 2:
            rise = value - before[1] if value >= before[1] else value
        else:
            rise = value if at >= start else 0.0  # the step before the range: only a base
        if round(rise) > 0:
            counted.append((at, round(rise)))
        before = (at, value)
    return counted


def _stays(host: str, model: str, listed: list[float], step: float) -> list[Stay]:
    """Runs of samples no more than a step and a half apart."""
    stays: list[Stay] = []
    for at in listed:
        if stays and at - stays[-1].end <= 1.5 * step:
            stays[-1].end = at
        else:
            stays.append(Stay(host, model, at, at))
    return stays


def _explain(stays: list[Stay], loads: list[Load], expiries: dict[tuple[str, str], list[tuple[float, float]]], start: float, end: float, step: float) -> None:
    """How each stay began (the load counted for it) and how it ended. ``stays`` in order of their start."""
    by_model: dict[tuple[str, str], list[Stay]] = defaultdict(list)
    by_host: dict[str, list[Stay]] = defaultdict(list)
    for stay in stays:
        by_model[(stay.host, stay.model)].append(stay)
        by_host[stay.host].append(stay)
    model_starts = {key: [stay.start for stay in group] for key, group in by_model.items()}
    host_starts = {host: [stay.start for stay in group] for host, group in by_host.items()}
    expiry_times = {key: [t for t, _ in points] for key, points in expiries.items()}
    behind = (LAG_STEPS + 1) * step  # the collector's samples lag the proxy's count: up to two steps, and the step they fall in
    early: list[tuple[Load, Stay, Stay | None]] = []  # (a load, the stay listed just after it, the latest before it)
    for load in loads:  # a load is counted when its request ends: it belongs to the latest stay begun by then
        key = (load.host, load.model)
        starts = model_starts.get(key, [])
        index = bisect_right(starts, load.at + step) - 1
        before = by_model[key][index] if index >= 0 else None
        if (before is None or before.end < load.at - behind) and index + 1 < len(starts) and starts[index + 1] <= load.at + behind:
            early.append((load, by_model[key][index + 1], before))
        elif before is not None:
            _count(before, load)
    for load, stay, before in early:
        # the stay listed a little after the count, unless a load of its own began it (the load counted first was of a
        # stay too short for the samples to list)
        if stay.loaded == NOT_SEEN:
            _count(stay, load)
        elif before is not None:
            _count(before, load)
    for stay in stays:
        if stay.start <= start + step and stay.loaded == NOT_SEEN:
            stay.loaded = BEFORE
    for key, group in by_model.items():
        for index, stay in enumerate(group):
            if stay.end > end - step:
                continue  # listed at the range's last step: RESIDENT
            gone = stay.end + step  # the first step it was no longer listed
            window = gone + max(LAG_STEPS * step, LOAD_WINDOW_S)
            again = group[index + 1] if index + 1 < len(group) else None
            if again is not None and again.start <= window and again.loaded == "reload":
                stay.ended = RELOADED  # the old runner drained, was unloaded, and the new one loaded
                continue
            at = bisect_right(expiry_times.get(key, []), stay.end) - 1
            expiry = expiries[key][at][1] if at >= 0 else None  # the last read while it was listed
            due = expiry is not None and stay.end - LAG_STEPS * step <= expiry <= gone + LAG_STEPS * step  # an older one is stale (busy since)
            neighbours, starts = by_host[stay.host], host_starts[stay.host]
            others = [s for s in neighbours[bisect_right(starts, stay.end - LAG_STEPS * step):bisect_right(starts, window)] if s.model != stay.model]
            right_then = [s for s in others if s.start <= gone + LAG_STEPS * step]  # began as it went, within the samples' lag
            if due and expiry <= stay.end:  # its expiry had come while it was still listed
                stay.ended = EXPIRED
            elif right_then:  # Ollama unloads the one it evicts, then loads: the nearest load that began as it went
                stay.ended, stay.by = EVICTED, min(right_then, key=lambda s: abs(s.start - gone)).model
            elif due:
                stay.ended = EXPIRED
            elif others:  # a load that took longer than the samples' lag (a cold load takes seconds to minutes)
                stay.ended, stay.by = EVICTED, others[0].model
            else:
                stay.ended = UNLOADED


def _count(stay: Stay, load: Load) -> None:
    """The load began ``stay``, or came while it stayed (a reload between two samples)."""
    if stay.loaded == NOT_SEEN:
        stay.loaded, stay.cause = load.reason, load.cause
    else:
        stay.loads.append(load)


def describe_start(stay: Stay) -> str:
    if stay.loaded == "reload":
        return f"reloaded ({stay.cause} changed)" if stay.cause else "reloaded"
    return {"cold": "cold load", BEFORE: "resident before the range", NOT_SEEN: "loaded (not through the proxy)"}.get(stay.loaded, stay.loaded)


def describe_end(stay: Stay) -> str:
    if stay.ended == EVICTED:
        return f"evicted by {stay.by}"
    return {RESIDENT: "still resident", RELOADED: "replaced by a reload", EXPIRED: "expired (keep_alive)", UNLOADED: "unloaded"}[stay.ended]


def events(stays: list[Stay]) -> list[dict[str, str | float]]:
    """The timeline as lines a person reads: each load and each departure, oldest first."""
    rows: list[dict[str, str | float]] = []
    for stay in stays:
        if stay.loaded != BEFORE:
            rows.append({"at": stay.start, "host": stay.host, "model": stay.model, "event": describe_start(stay)})
        for load in stay.loads:
            again = "reloaded" if load.reason == "reload" else "loaded again"
            rows.append({"at": load.at, "host": stay.host, "model": stay.model, "event": f"{again} between two samples" + (f" ({load.cause} changed)" if load.cause else "")})
        if stay.ended != RESIDENT:
            rows.append({"at": stay.end, "host": stay.host, "model": stay.model, "event": describe_end(stay)})
    return sorted(rows, key=lambda row: (row["at"], row["model"]))
