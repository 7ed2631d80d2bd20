"""The PromQL behind every card, chart and table of the dashboard, and a small client to run it.

No Streamlit here: functions return query strings or plain numbers and rows, so the
end-to-end tests run the very queries the page shows. Every query aggregates with
``sum`` (several series, several instances), takes rates over a window longer than the
scrape interval, and a division with nothing to divide yields "no data" (None), never 0.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
import re
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

# Generations, on every API Ollama serves (otel_proxy/ollama.py OPERATIONS, embeddings aside).
PARALLEL_QUERIES = 8  # queries a page has in flight at once
K = TypeVar("K")
T = TypeVar("T")
GENERATION_ROUTES = "/api/generate|/api/chat|/v1/chat/completions|/v1/completions|/v1/responses|/v1/messages"
SYSTEM_POWER = 'hw_type="system"'
GPU_SENSORS = 'hw_type="gpu"'
MEMORY_USED = 'system_memory_state="used"'
# recording.yml's records each hold a clock hour and are written within the hour after it (their group's offset):
# a record is read this long after the hour it holds ends (ui/usage.py, ui/residency.py)
RECORDED_BY = 3600 - 0.001


@dataclass(frozen=True)
class Filters:
    """What the page's instance and model pickers select; empty means everything."""

    host: str = ""  # matches the instance label's host part (the proxy and the collector of one machine)
    model: str = ""
    client: str = ""  # the ollama_client label: on the client families only (docs/metrics.md)
    # Ollama's own /metrics (an open pull request, docs/metrics.md) would publish four of this project's names
    # with labels of its own: every query of them selects this project's job, so scraping both counts once.
    proxy_job: str = "otel-proxy"  # ollama_prompt_tokens_total, ollama_generated_tokens_total (UI_PROXY_JOB)
    collector_job: str = "hw-collector"  # ollama_loaded_model_size_bytes, _vram_bytes (UI_COLLECTOR_JOB)

    @property
    def proxy(self) -> str:
        return f'job="{quote_label(self.proxy_job)}"'

    @property
    def collector(self) -> str:
        return f'job="{quote_label(self.collector_job)}"'

    def labels(self, *extra: str, model_label: str = "gen_ai_request_model") -> str:
        matchers = list(extra)
        if self.host:
            matchers.append(f'instance=~"{quote_label(re.escape(self.host))}(:[0-9]+)?"')
        if self.model and model_label:
            matchers.append(f'{model_label}="{quote_label(self.model)}"')
        return "{" + ",".join(matchers) + "}"

    def host_only(self, *extra: str) -> str:
        return self.labels(*extra, model_label="")

    def client_labels(self, *extra: str) -> str:
        """The host and the client picked (the client families carry no model label)."""
        matchers = [*extra] + ([f'ollama_client="{quote_label(self.client)}"'] if self.client else [])
        return self.host_only(*matchers)


def quote_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


# The cards ---------------------------------------------------------------------------------


def request_rate(f: Filters, window: str) -> str:
    return f"sum(rate(http_server_request_duration_seconds_count{f.host_only()}[{window}]))"


def average_latency(f: Filters, window: str) -> str:
    """Mean duration of generation requests: sum of durations over count, both as rates."""
    selector = f.host_only(f'http_route=~"{GENERATION_ROUTES}"')
    return (
        f"sum(rate(http_server_request_duration_seconds_sum{selector}[{window}]))"
        f" / sum(rate(http_server_request_duration_seconds_count{selector}[{window}]))"
    )


def served_by_ollama(f: Filters, window: str) -> str:
    """Generation requests Ollama answered with a 2xx in ``window``, from its own access log (the collector's
    ``ollama_server_requests_total``), those the stack sent itself left out: through the proxy or not. A route's
    first request begins its series: counted from 0 (``grown``), as on the proxy's side."""
    selector = f.host_only('job="hw-collector"', f'route=~"{GENERATION_ROUTES}"', 'status=~"2.."', 'origin=""')
    return f"sum {grown(f'ollama_server_requests_total{selector}', window)}"


def served_through_proxy(f: Filters, window: str) -> str:
    """Generation requests the proxy passed on and Ollama answered with a 2xx in ``window``."""
    selector = f.host_only('job="otel-proxy"', f'http_route=~"{GENERATION_ROUTES}"', 'http_response_status_code=~"2.."')
    return f"sum {grown(f'http_server_request_duration_seconds_count{selector}', window)}"


def log_truncations(f: Filters, window: str) -> dict[str, str]:
    """Prompts Ollama cut to fit a runner's context in ``window``, by model where its log tells (the collector's): how
    many, their tokens as sent and the tokens cut. A model's first cut begins its series: counted from 0 (``grown``)."""
    def cut(family: str, *extra: str) -> str:
        return f"sum by (model) {grown(f'{family}{f.host_only(*extra)}', window)}"

    return {
        "prompts": cut("ollama_prompt_truncations_total"),
        "tokens": cut("ollama_prompt_truncated_tokens_total", 'ollama_tokens="prompt"'),
        "cut": cut("ollama_prompt_truncated_tokens_total", 'ollama_tokens="cut"'),
    }


def runners(f: Filters) -> dict[str, str]:
    """The runners Ollama runs now with their settings, the OLLAMA_NUM_PARALLEL it started with, and the hosts with a GPU
    (by instance: the collector's, on Ollama's host)."""
    return {
        "runners": f"ollama_runner_info{f.host_only()}",
        "num_parallel": f"max by (instance) (ollama_server_num_parallel{f.host_only()})",
        "gpu_hosts": f"count by (instance) (hw_gpu_utilization{f.host_only()})",
    }


def log_unknown_share(f: Filters, window: str) -> str:
    """The share of Ollama's log lines in ``window`` of no shape the collector knows."""
    unknown = f.host_only('parsed="false"')
    return f"sum(increase(ollama_log_lines_total{unknown}[{window}])) / sum(increase(ollama_log_lines_total{f.host_only()}[{window}]))"


def success_rate(f: Filters, window: str) -> str:
    ok = f.host_only('http_response_status_code=~"[23].."', 'error_type=""')
    return (
        f"sum(rate(http_server_request_duration_seconds_count{ok}[{window}]))"
        f" / sum(rate(http_server_request_duration_seconds_count{f.host_only()}[{window}]))"
    )


def tokens_per_second(f: Filters, window: str) -> str:
    return f"sum(rate(ollama_generated_tokens_total{f.labels(f.proxy)}[{window}]))"


def latency_quantile(q: float, f: Filters, window: str, by: str = "") -> str:
    grouping = f"le, {by}" if by else "le"
    selector = f.host_only(f'http_route=~"{GENERATION_ROUTES}"') if not by else f.host_only()
    return f"histogram_quantile({q}, sum by ({grouping}) (rate(http_server_request_duration_seconds_bucket{selector}[{window}])))"


def time_to_first_token_quantile(q: float, f: Filters, window: str) -> str:
    """Per model when one is picked; every model together from the per-route histogram, which a fleet sums cheaply."""
    family = "gen_ai_server_time_to_first_token_seconds_bucket" if f.model else "ollama_time_to_first_token_seconds_bucket"
    return f"histogram_quantile({q}, sum by (le) (rate({family}{f.labels()}[{window}])))"


def active_requests(f: Filters) -> str:
    return f"sum(http_server_active_requests{f.host_only()})"


def gpu_utilization(f: Filters) -> str:
    """The mean busy share over every GPU of the hosts picked."""
    return f"avg(hw_gpu_utilization{f.host_only()})"


def power_watts(f: Filters) -> str:
    """The whole system's draw where a sensor reports it (macmon), else the sum of the parts."""
    return f"sum(hw_power_watts{f.host_only(SYSTEM_POWER)}) or sum(hw_power_watts{f.host_only()})"


def memory(f: Filters) -> dict[str, str]:
    """Host memory in use (the collector's psutil reading: not cached, not buffers), all of it, and the share in use."""
    used, limit = f"sum(system_memory_usage_bytes{f.host_only(MEMORY_USED)})", f"sum(system_memory_limit_bytes{f.host_only()})"
    return {"used": used, "limit": limit, "share": f"{used} / {limit}"}


def temperature_celsius(f: Filters) -> str:
    """The hottest GPU, or the hottest sensor where there is no GPU reading."""
    return f"max(hw_temperature_celsius{f.host_only(GPU_SENSORS)}) or max(hw_temperature_celsius{f.host_only()})"


def joules_per_token(f: Filters, window: str) -> str:
    energy = f"sum(rate(hw_energy_joules_total{f.host_only(SYSTEM_POWER)}[{window}])) or sum(rate(hw_energy_joules_total{f.host_only()}[{window}]))"
    return f"({energy}) / {tokens_per_second(f, window)}"


# The per-model table ---------------------------------------------------------------------------


def grown(series: str, window: str) -> str:
    """Each series' increase over the window, a series born in it counted from 0: Prometheus's increase()
    starts at a new series' first sample, so a model's first requests (or a first wait) would not count.
    A series older than the window with fewer than two samples in it (a window short for the scrape interval) has
    no increase(): its rise from the window's start, never its whole count since the proxy started."""
    return f"((increase({series}[{window}]) and {series} offset {window}) or clamp_min({series} - {series} offset {window}, 0) or {series})"


def per_model(f: Filters, window: str) -> dict[str, str]:
    by = "gen_ai_request_model"
    sel = f.labels()
    cold, reload = f.labels('ollama_load_reason="cold"'), f.labels('ollama_load_reason="reload"')
    return {
        "requests": f"sum by ({by}) {grown(f'gen_ai_server_request_duration_seconds_count{sel}', window)}",
        "tokens_per_second": f"sum by ({by}) (rate(ollama_generated_tokens_total{f.labels(f.proxy)}[{window}])) / sum by ({by}) (rate(ollama_eval_duration_seconds_sum{sel}[{window}]))",
        "p95_latency_s": f"histogram_quantile(0.95, sum by (le, {by}) (rate(gen_ai_server_request_duration_seconds_bucket{sel}[{window}])))",
        "cold_loads": f"sum by ({by}) {grown(f'ollama_model_loads_total{cold}', window)}",
        "reloads": f"sum by ({by}) {grown(f'ollama_model_loads_total{reload}', window)}",
        "queue_p95_s": f"histogram_quantile(0.95, sum by (le, {by}) (rate(ollama_queue_wait_seconds_bucket{sel}[{window}])))",
        "context_fill_p95": f"histogram_quantile(0.95, sum by (le, {by}) (rate(ollama_context_fill_bucket{sel}[{window}])))",
        **prompt_cache(f, window, by),
    }


def prompt_cache(f: Filters, window: str, by: str = "") -> dict[str, str]:
    """The cache-hit share of the prompt tokens whose cached count Ollama reported (0.33.3 and later), and the
    prompt rate on new tokens (docs/metrics.md, "The prompt cache"); no data where Ollama reports no cache."""
    sel, grouped = f.labels(), f"sum by ({by}) " if by else "sum "
    cached, new = f"rate(ollama_prompt_cached_tokens_total{sel}[{window}])", f"rate(ollama_prompt_new_tokens_total{sel}[{window}])"
    return {
        "cache_hit_share": f"{grouped}({cached}) / ({grouped}({cached}) + {grouped}({new}))",
        "prompt_rate": f"{grouped}(rate(ollama_prompt_eval_new_tokens_total{sel}[{window}])) / {grouped}(rate(ollama_prompt_eval_time_seconds_total{sel}[{window}]))",
    }


def prompt_tokens(f: Filters, window: str) -> dict[str, str]:
    """For "Where the time went": the prompt tokens in the window read from the cache, evaluated anew, and read again
    after the cache was lost (of the requests whose cached count Ollama reported)."""
    sel = f.labels()
    return {name: f"sum {grown(f'{family}{sel}', window)}" for name, family in (
        ("cached", "ollama_prompt_cached_tokens_total"), ("new", "ollama_prompt_new_tokens_total"), ("read_again", "ollama_prompt_cache_read_again_tokens_total"))}


def cache_losses(f: Filters, window: str = "1h") -> dict[str, str]:
    """Per model and cause: the turns that read their prompt again in the window, and the tokens they read again."""
    sel, by = f.labels(), "gen_ai_request_model, ollama_cache_cause"
    return {
        "misses": f"sum by ({by}) {grown(f'ollama_prompt_cache_misses_total{sel}', window)}",
        "tokens": f"sum by ({by}) {grown(f'ollama_prompt_cache_read_again_tokens_total{sel}', window)}",
        "loads": f"sum by (gen_ai_request_model, ollama_load_reason) {grown(f'ollama_model_loads_total{sel}', window)}",
    }


def ollama_versions(f: Filters) -> str:
    """The Ollama versions the collectors read (``ollama_up``'s label)."""
    return f"max by (ollama_version) (ollama_up{f.host_only()})"


def loaded_models(f: Filters) -> dict[str, str]:
    sel = f.labels(f.collector, model_label="model")
    return {
        "size_bytes": f"sum by (model) (ollama_loaded_model_size_bytes{sel})",
        "vram_bytes": f"sum by (model) (ollama_loaded_model_vram_bytes{sel})",
    }


# Who is using it: per client (ollama_client) -----------------------------------------------------------


def per_client(f: Filters, window: str) -> dict[str, str]:
    """Per client: requests, errors, tokens in and out, seconds of generation, p95 latency."""
    by = "ollama_client"

    def increase(family: str, *extra: str) -> str:
        """The counter's growth over the window, exact (no extrapolation, as increase() does): the table
        counts requests and tokens a person can check. A client new in the window grows from 0."""
        now = f"sum by ({by}) ({family}{f.client_labels(*extra)})"
        return f"{now} - (sum by ({by}) ({family}{f.client_labels(*extra)} offset {window}) or {now} * 0)"

    return {
        "requests": increase("ollama_client_requests_total"),
        "errors": increase("ollama_client_requests_total", 'error_type!=""'),
        "tokens_in": increase("ollama_client_tokens_total", 'gen_ai_token_type="input"'),
        "tokens_out": increase("ollama_client_tokens_total", 'gen_ai_token_type="output"'),
        "tokens_cached": increase("ollama_client_tokens_total", 'gen_ai_token_type="cached_input"'),
        "seconds": increase("ollama_client_request_duration_seconds_sum"),
        "p95_latency_s": f"histogram_quantile(0.95, sum by (le, {by}) (rate(ollama_client_request_duration_seconds_bucket{f.client_labels()}[{window}])))",
    }


# Why requests are slow: per model, from the proxy's scheduler view (otel_proxy/scheduling.py) ------------


def scheduling(f: Filters, window: str) -> dict[str, str]:
    """Per model: the mean slot wait per request, requests in flight, reloads in 10 minutes, context-fill p95, the
    share of its prompts cut to fit the context, and its prompt cache (cache-hit share, prompt rate on new tokens)."""
    by = "gen_ai_request_model"
    sel = f.labels()
    slot = f.labels('ollama_phase="slot"')
    reloads = f.labels('ollama_load_reason="reload"')
    generations = f.labels('gen_ai_operation_name!="embeddings"')
    return {
        "context_cut_share": f"sum by ({by}) (rate(ollama_context_full_total{sel}[{window}])) / sum by ({by}) (rate(gen_ai_server_request_duration_seconds_count{generations}[{window}]))",
        **prompt_cache(f, window, by),
        "slot_wait_s": f"sum by ({by}) (rate(ollama_scheduler_time_seconds_total{slot}[{window}])) / sum by ({by}) (rate(gen_ai_server_request_duration_seconds_count{sel}[{window}]))",
        "in_flight": f"sum by ({by}) (ollama_requests_in_flight{sel})",
        "reloads_10m": f"sum by ({by}) {grown(f'ollama_model_loads_total{reloads}', '10m')}",
        "context_fill_p95": f"histogram_quantile(0.95, sum by (le, {by}) (rate(ollama_context_fill_bucket{sel}[{window}])))",
    }


def held_up(f: Filters) -> str:
    """Per model and the other model whose loads it waited behind in Ollama's pending queue: seconds in 10 minutes."""
    sel = f.labels('ollama_phase="pending"', 'ollama_behind!=""')
    return f"sum by (gen_ai_request_model, ollama_behind) {grown(f'ollama_scheduler_time_seconds_total{sel}', '10m')}"


TIME_PHASES = {  # ollama.scheduler.time's phases (otel_proxy/scheduling.py), as the page names them
    "pending": "waiting behind loads",
    "drain": "draining for a reload",
    "load": "loading",
    "slot": "waiting for a slot",
    "unknown": "load or wait, not told apart",
}


def time_shares(f: Filters, window: str) -> dict[str, str]:
    """Where the time of every generation went: seconds per second in each phase before it ran, on the prompt,
    generating, and in all (what is left of "all" is Ollama's overhead, the network and answers Ollama did not time)."""
    sel = f.labels()

    def spent(family: str) -> str:
        return f"sum(rate({family}_sum{sel}[{window}]))"

    def phase(name: str) -> str:
        selector = f.labels(f'ollama_phase="{name}"')
        return f"sum(rate(ollama_scheduler_time_seconds_total{selector}[{window}]))"

    shares = {label: phase(name) for name, label in TIME_PHASES.items()}
    return {
        **shares,
        "prompt evaluation": spent("ollama_prompt_eval_duration_seconds"),
        "generation": spent("ollama_eval_duration_seconds"),
        "all": spent("gen_ai_server_request_duration_seconds"),
    }


# Charts: one range query each -----------------------------------------------------------------


def charts(f: Filters, window: str) -> dict[str, tuple[str, str]]:
    """Chart title → (PromQL, unit of its values: tokens/s, bytes, ratio, W, Cel or s)."""
    return {
        "Token generation": (tokens_per_second(f, window), "tokens/s"),
        "Memory used": (memory(f)["used"], "bytes"),
        "GPU utilisation": (gpu_utilization(f), "ratio"),
        "Power": (power_watts(f), "W"),
        "Temperature": (temperature_celsius(f), "Cel"),
        "Time to first token (p95)": (time_to_first_token_quantile(0.95, f, window), "s"),
        # an agent's turn that opens with a tool call: the prompt and the whole call, apart from the first token's latency
        "Time to a tool call (p95)": (f"histogram_quantile(0.95, sum by (le) (rate(ollama_time_to_tool_call_seconds_bucket{f.host_only()}[{window}])))", "s"),
    }


LATENCY_QUANTILES = (0.5, 0.75, 0.95, 0.99)


def latency_by_endpoint(q: float, f: Filters, window: str) -> str:
    return latency_quantile(q, f, window, by="http_route")


# The client ------------------------------------------------------------------------------------


class PrometheusError(Exception):
    """Prometheus could not be reached or refused the query; the message names the URL."""


@dataclass
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float | None]] = field(default_factory=list)


def _number(text: str) -> float | None:
    value = float(text)
    return None if math.isnan(value) or math.isinf(value) else value


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout_s, trust_env=False, limits=httpx.Limits(max_connections=PARALLEL_QUERIES))
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_QUERIES, thread_name_prefix="promql")
        self.queries_sent = 0

    def _get(self, path: str, params: dict[str, str | float]) -> Any:
        self.queries_sent += 1
        try:
            answer = self._client.get(self.url + path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"Prometheus at {self.url} is unreachable ({exc or type(exc).__name__})") from exc
        try:
            body = answer.json()
        except ValueError as exc:
            raise PrometheusError(f"Prometheus at {self.url} answered {answer.status_code} without JSON") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus at {self.url} refused a query: {body.get('error', answer.status_code)}")
        return body["data"]

    def vector(self, promql: str, at: float | None = None) -> list[tuple[dict[str, str], float | None]]:
        params: dict[str, str | float] = {"query": promql}
        if at is not None:
            params["time"] = at
        return [(item["metric"], _number(item["value"][1])) for item in self._get("/api/v1/query", params)["result"]]

    def scalar(self, promql: str, at: float | None = None) -> float | None:
        """One number: the sum over what came back, or None for no data (empty, NaN or Inf)."""
        values = [value for _, value in self.vector(promql, at)]
        present = [value for value in values if value is not None]
        return sum(present) if present else None

    def range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        result = self._get("/api/v1/query_range", {"query": promql, "start": start, "end": end, "step": step})["result"]
        return [Series(item["metric"], [(float(t), _number(v)) for t, v in item["values"]]) for item in result]

    def side_by_side(self, calls: Mapping[K, Callable[[], T]]) -> dict[K, T]:
        """Run several of this client's queries at once (``{name: lambda: prom.scalar(...)}``).

        A page's queries are independent: sent in turn, a fleet's few costly ones add up
        (docs/benchmarks.md, "A fleet"), while Prometheus runs them in parallel.
        """
        futures = {name: self._pool.submit(call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}

    def alert_rules(self) -> list[dict[str, Any]]:
        """The alerting rules' groups, each rule with its alerts (state, labels, activeAt) and ``for:`` (duration)."""
        return self._get("/api/v1/rules", {"type": "alert"})["groups"]

    def label_values(self, label: str, metric: str) -> list[str]:
        return sorted(self._get(f"/api/v1/label/{label}/values", {"match[]": metric}))
