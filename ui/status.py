"""The AI status line: the dashboard's numbers turned into words by stated rules, then into one
human sentence by a small model through Ollama, with the rules' own sentence as the fallback.

    python -m ui.status      # print the current line once (for a shell prompt or tmux)
"""

from __future__ import annotations

import html
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial

import httpx

from ollama_otel_stack.ollama_routes import OWN_QUERY
from ui import format as fmt
from ui import queries, settings
from ui.settings import DEFAULTS, Settings
from ui.queries import Filters, Prometheus, PrometheusError

MAX_CHARS = 100
REFRESH_S = 30.0  # regenerate at most this often...
SOONEST_S = 10.0  # ...or sooner when a state word changes, but never more often than this

# Thresholds, stated once: each condition's words and where they change.
ACTIVITY = ((0.2, "low"), (2.0, "moderate"))  # requests/s below each bound; above: high; none at all: idle
GPU = ((0.10, "idle"), (0.80, "busy"))  # above: saturated
GPU_SPIKE = 0.40  # a rise of 40 points within the recent series is a spike
TEMPERATURE = ((75.0, "ok"), (85.0, "warm"))  # °C; above: hot
POWER = ((50.0, "low"), (250.0, "moderate"))  # W; above: high
MEMORY = ((0.75, "good"), (0.90, "tight"))  # used fraction; above: nearly full
RELIABILITY = ((0.95, "failing"), (0.99, "degraded"))  # success ratio below each bound; above: good
LATENCY_ELEVATED = 1.5  # p95 now over the hour's p95
LATENCY_HIGH = 3.0
# Why requests are slow, and what to change (docs/metrics.md, "Why was that request slow").
# Each is also an alert rule in alerts.yml, with the same threshold (tests/e2e/stack/test_files.py holds them equal).
SLOT_WAIT_S = 0.5  # a model's mean wait for a slot per request above this: it is slot-bound
HELD_UP_10M_S = 5.0  # seconds one model waited behind another's loads within 10 minutes, from this: load-queue-bound
RELOADS_10M = 3  # reloads of one model within 10 minutes from this many: clients switch runner options
CONTEXT_CUT_SHARE = 0.05  # a model's prompts cut to fit its context (ollama_context_full_total), from this share of them
CACHE_MISSES_1H = 3  # a model's turns that read their prompt again for one cause within an hour, from this many
# Each cause of a lost prompt cache (otel_proxy/continuations.py), as the advice says it: what happened, what to change.
CACHE_ADVICE = {
    "reload": ("was reloaded {loads} in an hour, and each reload dropped every conversation's prompt cache", "give every client the same num_ctx"),
    "unloaded": ("was unloaded and loaded again {loads} in an hour, and each load started with an empty prompt cache",
                 "raise OLLAMA_KEEP_ALIVE (or OLLAMA_MAX_LOADED_MODELS where models evict each other)"),
    "history_changed": ("had {misses} turns in an hour that changed an earlier message and read the rest again", "keep agents' histories append-only"),
    "system_or_tools_changed": ("had {misses} turns in an hour whose system prompt or tools changed", "keep them fixed within a session"),
    "truncated": ("had {misses} turns in an hour that outgrew its context and were cut", "raise num_ctx"),
    "slot_taken": ("had {misses} turns in an hour whose cache other conversations took with the runner's slots",
                   "raise OLLAMA_NUM_PARALLEL (each slot needs its own num_ctx of memory) or run fewer agents on it at once"),
    "unknown": ("had {misses} turns in an hour that read their prompt again for a reason the proxy cannot tell", "see the turns in Sessions"),
}
CPU_SHARE = 0.05  # a loaded model with this share or more of its weights outside VRAM (/api/ps size_vram < size)
# From Ollama's own log (the collector's --ollama-log):
BYPASSED_1H = 10  # generation requests Ollama answered in an hour that the proxy did not pass on, from this many
TRUNCATIONS_1H = 1  # prompts Ollama cut to fit a model's context in an hour ("truncating input prompt"), from this many
LOG_UNKNOWN_SHARE = 0.5  # Ollama's log lines in an hour of no shape the collector knows, from this share: its formats changed


@dataclass(frozen=True)
class Cut:
    """A model's prompts Ollama cut to fit its context in an hour: how many, their tokens as sent and the tokens cut
    (None where the collector does not count tokens)."""

    prompts: float
    tokens: float | None = None
    cut: float | None = None


@dataclass(frozen=True)
class RunnerSettings:
    """A runner Ollama runs now, as its log gave its command line (ollama_runner_info)."""

    instance: str
    model: str
    slots: int | None
    gpu_layers: str  # a number, or "auto"


@dataclass
class ModelPressure:
    """One model's scheduling numbers (None: no data) and what /-/requests says of its reloads and context."""

    model: str
    slot_wait_s: float | None = None  # mean per request
    in_flight: float | None = None
    reloads_10m: float | None = None
    context_fill_p95: float | None = None
    held_up_by: dict[str, float] = field(default_factory=dict)  # other model -> seconds waited behind its loads, 10 min
    size_bytes: float | None = None  # loaded now (the collector's /api/ps): its size and the part in VRAM
    vram_bytes: float | None = None
    reload_causes: list[str] = field(default_factory=list)  # newest first, e.g. "num_ctx 4096 -> 8192"
    context_length: int | None = None
    context_cut_share: float | None = None  # of its requests in the window, those whose prompt was cut to fit the context
    prompt_rate: float | None = None  # the prompt rate on new tokens (tokens/s), where Ollama reports its cache
    cache_hit_share: float | None = None
    cache_lost: dict[str, tuple[float, float]] = field(default_factory=dict)  # cause -> (turns, tokens read again), an hour
    loads_1h: dict[str, float] = field(default_factory=dict)  # load reason (cold, reload) -> loads, an hour

    @property
    def cpu_share(self) -> float | None:
        """The share of the loaded model outside VRAM; None when not loaded, or on a host with no GPU memory in use."""
        if not self.size_bytes or not self.vram_bytes:
            return None
        return max(0.0, 1.0 - self.vram_bytes / self.size_bytes)


@dataclass
class Snapshot:
    """The current values the analysis reads; None where there is no data."""

    ollama_up: bool | None = None
    request_rate: float | None = None
    active_requests: float | None = None
    p95_latency_s: float | None = None
    p95_latency_hour_s: float | None = None
    success_rate: float | None = None
    tokens_per_second: float | None = None
    ttft_p95_s: float | None = None
    gpu: float | None = None
    gpu_recent: list[float] = field(default_factory=list)
    temperature_c: float | None = None
    power_w: float | None = None
    memory_ratio: float | None = None
    loaded_models: list[str] = field(default_factory=list)
    pressure: list[ModelPressure] = field(default_factory=list)
    served_1h: float | None = None  # generation requests Ollama answered in the last hour, by its own log
    proxied_1h: float | None = None  # ... of them, those the proxy passed on
    truncations_1h: dict[str, Cut] = field(default_factory=dict)  # prompts Ollama cut, by model ("" where its log does not tell)
    runners: list[RunnerSettings] = field(default_factory=list)
    num_parallel: dict[str, float] = field(default_factory=dict)  # OLLAMA_NUM_PARALLEL Ollama started with, by instance
    gpu_hosts: set[str] = field(default_factory=set)  # instances whose collector reads a GPU
    log_unknown_share: float | None = None


def _switching(causes: list[str]) -> str:
    """ "num_ctx between 4096 and 8192" from causes such as "num_ctx 4096 -> 8192"."""
    values: dict[str, set[str]] = {}
    for cause in causes:
        for change in cause.split(", "):
            match = re.fullmatch(r"(\w+) (\S+) -> (\S+)", change)
            if match:
                values.setdefault(match.group(1), set()).update((match.group(2), match.group(3)))
    if not values:
        return "runner options"
    option, seen = max(values.items(), key=lambda item: len(item[1]))
    ordered = sorted(seen, key=lambda v: (len(v), v))
    return f"{option} between {', '.join(ordered[:-1])} and {ordered[-1]}" if len(ordered) > 1 else f"{option} to {ordered[0]}"


def advise(s: Snapshot) -> list[str]:
    """The cause of slowness and its remedy, one sentence each, by the thresholds above; the worst first.

    Six kinds: slot-bound, load-queue-bound, reload-bound, context-bound, partial offload and a lost prompt cache. Each is
    weighed by the seconds it costs or an equivalent, so the one to act on first leads."""
    advice: list[tuple[float, str]] = []
    for p in s.pressure:
        if p.slot_wait_s is not None and p.slot_wait_s > SLOT_WAIT_S:
            advice.append((p.slot_wait_s * 10, f"{p.model} requests wait {fmt.seconds(p.slot_wait_s)} on average for a slot ({fmt.count(p.in_flight)} in flight): "
                                               "raise OLLAMA_NUM_PARALLEL or add a host"))
        for other, seconds in sorted(p.held_up_by.items(), key=lambda item: -item[1]):
            if seconds >= HELD_UP_10M_S:
                advice.append((seconds, f"loads of {other} hold up {p.model} ({fmt.seconds(seconds)} of waiting in 10 min): keep {other} loaded "
                                        "(OLLAMA_KEEP_ALIVE, OLLAMA_MAX_LOADED_MODELS) or give it its own host"))
        if p.reloads_10m is not None and round(p.reloads_10m) >= RELOADS_10M:
            advice.append((p.reloads_10m, f"{round(p.reloads_10m)} reloads of {p.model} in 10 min: clients switch {_switching(p.reload_causes)}; pin one value"))
        if p.context_cut_share is not None and p.context_cut_share >= CONTEXT_CUT_SHARE:
            context = f"{p.context_length}-token context" if p.context_length else "context"
            advice.append((p.context_cut_share * 10, f"{fmt.percent(min(p.context_cut_share, 1.0))} of {p.model}'s prompts were cut to fit its {context}: raise num_ctx"))
        lost = cache_advice(p)
        if lost is not None:
            advice.append(lost)
        share = p.cpu_share
        if share is not None and share >= CPU_SHARE:
            advice.append((share * 10, f"{p.model} runs {fmt.percent(share)} on the CPU: a smaller quantisation or num_ctx would fit VRAM"))
    advice += log_advice(s)
    return [text for _, text in sorted(advice, key=lambda item: -item[0])]


def log_advice(s: Snapshot) -> list[tuple[float, str]]:
    """What Ollama's own log tells and the proxy cannot: requests that bypassed it, prompts cut, formats changed."""
    advice: list[tuple[float, str]] = []
    if s.served_1h is not None:
        bypassed = s.served_1h - (s.proxied_1h or 0.0)
        if round(bypassed) >= BYPASSED_1H:
            advice.append((bypassed, f"{round(bypassed):,} of {round(s.served_1h):,} requests in the last hour reached Ollama without the proxy, and its "
                                     "numbers miss them: point those clients at the proxy, or let Ollama listen on 127.0.0.1 only (OLLAMA_HOST)"))
    for model, cut in sorted(s.truncations_1h.items(), key=lambda item: -item[1].prompts):
        if round(cut.prompts) >= TRUNCATIONS_1H:
            prompts = f"{round(cut.prompts)} prompt{'s' if round(cut.prompts) != 1 else ''}"
            what = f"{round(cut.cut):,} of {round(cut.tokens):,} prompt tokens ({prompts})" if cut.tokens and cut.cut is not None else prompts
            advice.append((cut.prompts * 10, f"Ollama cut {what} to {model or 'a model'} in the last hour to fit its context (the answers came back 200 OK "
                                             "without the start of the prompt): raise num_ctx or OLLAMA_CONTEXT_LENGTH"))
    advice += runner_advice(s)
    if s.log_unknown_share is not None and s.log_unknown_share >= LOG_UNKNOWN_SHARE:
        advice.append((1.0, f"{fmt.percent(s.log_unknown_share)} of Ollama's log lines in the last hour were of no shape the collector knows: "
                            "Ollama's log format changed; upgrade the collector"))
    return advice


def runner_advice(s: Snapshot) -> list[tuple[float, str]]:
    """A runner Ollama started with fewer slots than OLLAMA_NUM_PARALLEL asks for (server/sched.go ``load``: one for an
    embedding model and the architectures not safe in parallel), or on the CPU alone on a host with a GPU (``-ngl 0``:
    a client's or the Modelfile's num_gpu 0, llm/llama_server.go)."""
    advice: list[tuple[float, str]] = []
    for runner in s.runners:
        asked = s.num_parallel.get(runner.instance)
        if asked is not None and runner.slots is not None and runner.slots < asked:
            slots = f"{runner.slots} slot{'s' if runner.slots != 1 else ''}"
            advice.append((asked, f"{runner.model}'s runner has {slots} where OLLAMA_NUM_PARALLEL asks for {round(asked)}: Ollama runs it one request at "
                                  "a time (an embedding model, or an architecture not safe in parallel), so its requests queue; send it fewer at once "
                                  "or give it a host of its own"))
        if runner.gpu_layers == "0" and runner.instance in s.gpu_hosts:
            advice.append((20.0, f"{runner.model} runs on the CPU alone (num_gpu 0: no layers on the GPU) on a host with a GPU: "
                                 "drop num_gpu 0 from its clients' options or its Modelfile"))
    return advice


def cache_advice(p: ModelPressure) -> tuple[float, str] | None:
    """The cause of a lost prompt cache that cost the model most in the last hour, weighed by the seconds its re-read
    tokens took (at the prompt rate on new tokens, else a thousand a second), where it happened CACHE_MISSES_1H times."""
    found = [(tokens, cause, misses) for cause, (misses, tokens) in p.cache_lost.items() if round(misses) >= CACHE_MISSES_1H and cause in CACHE_ADVICE]
    if not found:
        return None
    tokens, cause, misses = max(found)
    what, remedy = CACHE_ADVICE[cause]
    loads = round(p.loads_1h.get("reload" if cause == "reload" else "cold", 0.0))
    said = what.format(loads=f"{loads} time{'s' if loads != 1 else ''}", misses=round(misses))
    return tokens / (p.prompt_rate or 1000.0), f"{p.model} {said} ({fmt.count(tokens)} tokens read again): {remedy}"


def _band(value: float, bands: tuple[tuple[float, str], ...], above: str) -> str:
    for bound, word in bands:
        if value < bound:
            return word
    return above


def assess(s: Snapshot) -> dict[str, str]:
    """One phrase per condition, by the thresholds above. Missing data says so."""
    states: dict[str, str] = {}
    states["ollama"] = "unreachable" if s.ollama_up is False else "running" if s.ollama_up else "unknown"
    rate = s.request_rate or 0.0
    states["activity"] = "idle" if rate == 0 and not s.active_requests else _band(rate, ACTIVITY, "high")
    if s.p95_latency_s is None:
        states["latency"] = "no recent requests"
    elif s.p95_latency_hour_s:
        ratio = s.p95_latency_s / s.p95_latency_hour_s
        states["latency"] = "high" if ratio >= LATENCY_HIGH else "elevated" if ratio >= LATENCY_ELEVATED else "normal"
    else:
        states["latency"] = "normal"
    if s.success_rate is None:
        states["reliability"] = "no requests"
    else:
        states["reliability"] = _band(s.success_rate, RELIABILITY, "good")
    if s.gpu is None:
        states["gpu"] = "not measured"
    else:
        states["gpu"] = _band(s.gpu, GPU, "saturated")
        if s.gpu_recent and s.gpu - min(s.gpu_recent) >= GPU_SPIKE:
            states["gpu"] += f", spiked from {fmt.percent(min(s.gpu_recent))} to {fmt.percent(s.gpu)}"
    states["temperature"] = "not measured" if s.temperature_c is None else _band(s.temperature_c, TEMPERATURE, "hot")
    states["power"] = "not measured" if s.power_w is None else _band(s.power_w, POWER, "high")
    states["memory"] = "not measured" if s.memory_ratio is None else _band(s.memory_ratio, MEMORY, "nearly full")
    states["advice"] = "; ".join(sorted(line.split(" (")[0].split(":")[0] for line in advise(s))) or "none"
    return states


def describe(s: Snapshot, states: dict[str, str]) -> list[str]:
    """The facts for the prompt: every analysed condition, with its number."""
    models = ", ".join(s.loaded_models) or "none"
    return [
        f"Ollama: {states['ollama']}; models loaded: {models}",
        f"activity: {states['activity']} ({fmt.rate(s.request_rate, 'requests/s')}, {fmt.count(s.active_requests)} in flight)",
        f"latency: {states['latency']} (p95 {fmt.seconds(s.p95_latency_s)} vs {fmt.seconds(s.p95_latency_hour_s)} over the last hour)",
        f"reliability: {states['reliability']} (success {fmt.percent(s.success_rate)})",
        f"generation: {fmt.rate(s.tokens_per_second, 'tokens/s')}, time to first token p95 {fmt.seconds(s.ttft_p95_s)}",
        f"GPU: {states['gpu']} ({fmt.percent(s.gpu)})",
        f"temperature: {states['temperature']} ({fmt.celsius(s.temperature_c)})",
        f"power: {states['power']} ({fmt.watts(s.power_w)})",
        f"memory: {states['memory']} ({fmt.percent(s.memory_ratio)} used)",
        *(f"advice: {line}" for line in advise(s)),
    ]


def rules_sentence(s: Snapshot, states: dict[str, str]) -> str:
    """The line the rules write themselves, used whenever the model cannot."""
    if states["ollama"] == "unreachable":
        head = "Ollama is unreachable"
    elif states["activity"] == "idle":
        head = "Ollama is idle"
    else:
        head = f"Ollama is running ({states['activity']} load, latency {states['latency']})"
    parts = [head]
    if states["reliability"] in ("degraded", "failing"):
        parts.append(f"requests are {states['reliability']}")
    if states["gpu"] != "not measured":
        parts.append(f"GPU {states['gpu']}")
    if states["temperature"] != "not measured":
        parts.append(f"temperature {states['temperature']}")
    if states["memory"] != "not measured":
        parts.append(f"memory {states['memory']}")
    advice = advise(s)
    if advice:  # the cause of slowness and what to change come first: that is what a person acts on
        return advice[0]
    return clean(", ".join(parts)) or head


def build_prompt(s: Snapshot, states: dict[str, str]) -> str:
    facts = "\n".join(f"- {line}" for line in describe(s, states))
    return (
        "You write the one-line status of a local LLM server for its dashboard.\n"
        f"Current state:\n{facts}\n"
        "Write one plain sentence under 100 characters that a person reads at a glance: say whether "
        "the server is fine and name anything unusual (a spike, heat, errors, slowness); if there is advice, "
        "give the first advice's cause and remedy. "
        "No quotes, no markdown, no preamble.\nStatus:"
    )


class StatusModelError(Exception):
    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def ask_model(ollama_url: str, prompt: str, model: str = DEFAULTS.status_model, timeout_s: float = DEFAULTS.status_timeout_s) -> str:
    """Ollama's /api/generate, directly (not through the proxy: the status line is not user traffic), marked as the
    stack's own in Ollama's access log (``OWN_QUERY``), so that it is not counted as a client bypassing the proxy."""
    body = {
        "model": model,
        "prompt": prompt,
        "stream": False,
        "keep_alive": "10m",
        "options": {"temperature": 0.2, "num_predict": 48, "stop": ["\n"]},
    }
    try:
        answer = httpx.post(ollama_url.rstrip("/") + "/api/generate?" + OWN_QUERY, json=body, timeout=timeout_s, trust_env=False)
    except httpx.TimeoutException as exc:
        raise StatusModelError(f"{model} did not answer within {timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise StatusModelError(f"Ollama is unreachable at {ollama_url}") from exc
    if answer.status_code == 404:
        raise StatusModelError(f"{model} is not pulled", hint=f"run `ollama pull {model}`")
    if answer.status_code != 200:
        raise StatusModelError(f"Ollama answered {answer.status_code}")
    try:
        return str(answer.json().get("response", ""))
    except ValueError as exc:
        raise StatusModelError("Ollama's answer is not JSON") from exc


_TAGS = re.compile(r"<[^>]*>")
_MARKDOWN = re.compile(r"[*_`#>\[\]]|^\s*[-+]\s+")
_PREAMBLE = re.compile(r"^(status|here is|here's)[^:]{0,30}:\s*", re.I)


def clean(text: str) -> str | None:
    """One plain line of at most 100 characters, cut at a word; None if nothing usable is left."""
    lines = [line.strip() for line in html.unescape(text).splitlines() if line.strip()]
    if not lines:
        return None
    line = _TAGS.sub("", lines[0])
    line = _MARKDOWN.sub("", line)
    line = _PREAMBLE.sub("", line).strip().strip("\"'“”‘’").strip()
    line = re.sub(r"\s+", " ", line)
    if len(line) > MAX_CHARS:
        line = line[: MAX_CHARS + 1].rsplit(" ", 1)[0].rstrip(",;:- ")
        line = line[:MAX_CHARS]
    return line if len(line) >= 3 else None


@dataclass(frozen=True)
class StatusLine:
    text: str
    source: str  # the model's name, or "rules"
    generated_at: float
    hint: str = ""
    why_rules: str = ""


class StatusCache:
    """One generation serves every tab: regenerated at most every 30 s, sooner (≥ 10 s) when a state word changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._line: StatusLine | None = None
        self._states: dict[str, str] = {}
        self.model_calls = 0

    def clear(self) -> None:
        with self._lock:
            self._line, self._states, self.model_calls = None, {}, 0

    def get(self, snapshot: Snapshot, configured: Settings, now: float | None = None) -> StatusLine:
        """The line for ``snapshot``, written by the status model the settings name (through OLLAMA_URL)."""
        now = time.time() if now is None else now
        states = assess(snapshot)
        with self._lock:
            line = self._line
            if line is not None:
                age = now - line.generated_at
                changed = states != self._states
                if age < SOONEST_S or (age < REFRESH_S and not changed):
                    return line
            self._line = self._generate(snapshot, states, configured, now)
            self._states = states
            return self._line

    def _generate(self, snapshot: Snapshot, states: dict[str, str], configured: Settings, now: float) -> StatusLine:
        fallback = rules_sentence(snapshot, states)
        if not configured.ollama_url:
            return StatusLine(fallback, "rules", now, why_rules="no OLLAMA_URL")
        self.model_calls += 1
        model = configured.status_model
        try:
            text = clean(ask_model(configured.ollama_url, build_prompt(snapshot, states), model, configured.status_timeout_s))
        except StatusModelError as exc:
            return StatusLine(fallback, "rules", now, hint=exc.hint, why_rules=exc.reason)
        if text is None:
            return StatusLine(fallback, "rules", now, why_rules=f"{model} gave no usable answer")
        return StatusLine(text, model, now)


STATUS = StatusCache()  # process-wide: shared by every browser tab of this Streamlit server


def pressure(prom: Prometheus, f: Filters, window: str, recent: list[dict]) -> list[ModelPressure]:
    """Each model's scheduling numbers from Prometheus (the proxy's, and what the collector says is loaded), with
    the reload causes and context length of its recent requests."""
    asked = {(name, "gen_ai_request_model"): promql for name, promql in queries.scheduling(f, window).items()}
    asked |= {(name, "model"): promql for name, promql in queries.loaded_models(f).items()}
    asked[("held_up_by", "gen_ai_request_model")] = queries.held_up(f)
    asked |= {(name, "gen_ai_request_model"): promql for name, promql in queries.cache_losses(f).items()}
    answers = prom.side_by_side({key: partial(prom.vector, promql) for key, promql in asked.items()})
    models: dict[str, ModelPressure] = {}
    for (column, label), answer in answers.items():
        for labels, value in answer:
            name = labels.get(label, "")
            if not name or value is None:
                continue
            found = models.setdefault(name, ModelPressure(name))
            if column == "held_up_by":
                if labels.get("ollama_behind"):
                    found.held_up_by[labels["ollama_behind"]] = value
            elif column in ("misses", "tokens"):
                cause = labels.get("ollama_cache_cause", "")
                misses, tokens = found.cache_lost.get(cause, (0.0, 0.0))
                found.cache_lost[cause] = (value, tokens) if column == "misses" else (misses, value)
            elif column == "loads":
                found.loads_1h[labels.get("ollama_load_reason", "")] = value
            else:
                setattr(found, column, value)
    for entry in recent:  # newest first
        found = models.get(entry.get("model") or "")
        if found is None:
            continue
        if entry.get("reload_cause"):
            found.reload_causes.append(entry["reload_cause"])
        if found.context_length is None and entry.get("context_length"):
            found.context_length = entry["context_length"]
    return sorted(models.values(), key=lambda p: p.model)


def read_snapshot(prom: Prometheus, f: Filters, window: str = "5m", recent: list[dict] | None = None) -> Snapshot:
    """The dashboard's current values, from the dashboard's own queries (and the proxy's recent requests, for causes)."""
    now = time.time()
    gpu_series = prom.range(queries.gpu_utilization(f), now - 300, now, 15)
    gpu_recent = [value for series in gpu_series for _, value in series.points if value is not None]
    asked = {
        "up": f"max(ollama_up{f.host_only()})",
        "used": queries.memory(f)["used"],
        "limit": queries.memory(f)["limit"],
        "request_rate": queries.request_rate(f, window),
        "active_requests": queries.active_requests(f),
        "p95_latency_s": queries.latency_quantile(0.95, f, window),
        "p95_latency_hour_s": queries.latency_quantile(0.95, f, "1h"),
        "success_rate": queries.success_rate(f, window),
        "tokens_per_second": queries.tokens_per_second(f, window),
        "ttft_p95_s": queries.time_to_first_token_quantile(0.95, f, window),
        "gpu": queries.gpu_utilization(f),
        "temperature_c": queries.temperature_celsius(f),
        "power_w": queries.power_watts(f),
        "served_1h": queries.served_by_ollama(f, "1h"),
        "proxied_1h": queries.served_through_proxy(f, "1h"),
        "log_unknown_share": queries.log_unknown_share(f, "1h"),
    }
    values = prom.side_by_side({name: partial(prom.scalar, promql) for name, promql in asked.items()})
    up, used, limit = values.pop("up"), values.pop("used"), values.pop("limit")
    return Snapshot(
        truncations_1h=truncations(prom, f),
        **runners(prom, f),
        ollama_up=None if up is None else up == 1,
        gpu_recent=gpu_recent,
        memory_ratio=used / limit if used is not None and limit else None,
        loaded_models=sorted(labels.get("model", "") for labels, _ in prom.vector(queries.loaded_models(f)["vram_bytes"])),
        pressure=pressure(prom, f, window, recent or []),
        **values,
    )


def truncations(prom: Prometheus, f: Filters) -> dict[str, Cut]:
    """The prompts Ollama cut in the last hour, by model, from its log (the collector's)."""
    found: dict[str, dict[str, float]] = {}
    for part, promql in queries.log_truncations(f, "1h").items():
        for labels, value in prom.vector(promql):
            if value is not None:
                found.setdefault(labels.get("model", ""), {})[part] = value
    return {model: Cut(parts["prompts"], parts.get("tokens"), parts.get("cut")) for model, parts in found.items() if "prompts" in parts}


def runners(prom: Prometheus, f: Filters) -> dict:
    """The runners Ollama runs now, the OLLAMA_NUM_PARALLEL it started with, the hosts with a GPU: Snapshot's fields."""
    asked = queries.runners(f)
    listed = [RunnerSettings(labels.get("instance", ""), labels.get("model", ""), int(labels["slots"]) if labels.get("slots", "").isdigit() else None,
                             labels.get("gpu_layers", "auto")) for labels, _ in prom.vector(asked["runners"])]
    parallel = {labels.get("instance", ""): value for labels, value in prom.vector(asked["num_parallel"]) if value is not None}
    return {"runners": listed, "num_parallel": parallel, "gpu_hosts": {labels.get("instance", "") for labels, _ in prom.vector(asked["gpu_hosts"])}}


def recent_requests(proxy_url: str) -> list[dict]:
    """The proxy's /-/requests, newest first; [] when it cannot be read (the causes are then not named)."""
    try:
        return list(httpx.get(proxy_url.rstrip("/") + "/-/requests", timeout=5, trust_env=False).json()["requests"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return []


def main() -> int:
    configured = settings.read()
    prom = Prometheus(configured.prometheus_url)
    try:
        snapshot = read_snapshot(prom, Filters(proxy_job=configured.proxy_job, collector_job=configured.collector_job), recent=recent_requests(configured.proxy_url))
    except PrometheusError as exc:
        print(f"status unknown: {exc}")
        return 1
    line = STATUS.get(snapshot, configured)
    print(line.text if line.source != "rules" else f"{line.text} (rules{': ' + line.hint if line.hint else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
