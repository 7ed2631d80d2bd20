"""The proxy's metric catalogue: every instrument, its unit, description and buckets.

docs/metrics.md lists the same metrics under their Prometheus names; a test keeps the
two in step. Bucket boundaries follow the OpenTelemetry GenAI semantic conventions,
extended where a local model needs it (cold loads take tens of seconds, and a fast
GPU emits a token every few milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import Meter

from otel_proxy.continuations import CAUSES
from otel_proxy.recorder import Recorder

# The 20 boundaries users asked for: sub-second chat turns up to three-minute generations.
HTTP_DURATION_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 5, 7.5, 10, 15, 30, 45, 60, 90, 120, 180,
)  # fmt: skip
# Time to first token, per model: 5 ms (a warm GPU, a short prompt) to two minutes (a cold load
# behind a queue). 14 boundaries, not 22: the fleet-wide p95 card and chart sum this histogram
# over every model and host, and its cost grows with its series (docs/benchmarks.md, "A fleet").
TIME_TO_FIRST_TOKEN_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
)  # fmt: skip
TIME_PER_OUTPUT_TOKEN_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
GENAI_REQUEST_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84, 327.68,
)  # fmt: skip
# Tokens in or out of one request: a word to a million-token context (the semantic conventions'
# boundaries go to 67 M, past any local model's context): 10 rather than 14, kept per model.
TOKEN_USAGE_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 1048576,
)  # fmt: skip
# Ollama's own phases per model (load, prompt evaluation, generation): what users ask of them is
# "milliseconds, a second or two, or minutes?", so 12 boundaries rather than 17 (docs/metrics.md, series budget).
OLLAMA_PHASE_BUCKETS = (
    0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip

# A client's requests, all models together: a chat turn to a long agent run.
CLIENT_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)  # fmt: skip
# Waiting for a slot or a load: milliseconds on a quiet server to minutes behind a long queue.
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)  # fmt: skip
# The proxy's own time on a request: a tenth of a millisecond when all is well, tens under a busy scrape or a full core.
ADDED_DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)  # fmt: skip
CONTEXT_FILL_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0)  # fmt: skip
LOAD_REASONS = ("cold", "reload")
# Where a request's time went before it ran (otel_proxy/scheduling.py): ollama.scheduler.time's ollama.phase.
PHASES = ("pending", "drain", "load", "slot", "unknown")

HISTOGRAM, COUNTER, UP_DOWN = "histogram", "counter", "up_down_counter"


@dataclass(frozen=True)
class Spec:
    """One instrument: the attribute it is recorded through, its OpenTelemetry name, kind, unit and description, and
    a histogram's bucket boundaries."""

    attribute: str
    name: str
    kind: str
    unit: str
    description: str
    buckets: tuple[float, ...] = ()

    def create(self, meter: Meter) -> Any:
        if self.kind == HISTOGRAM:
            return meter.create_histogram(self.name, unit=self.unit, description=self.description, explicit_bucket_boundaries_advisory=self.buckets)
        if self.kind == COUNTER:
            return meter.create_counter(self.name, unit=self.unit, description=self.description)
        return meter.create_up_down_counter(self.name, unit=self.unit, description=self.description)


CATALOGUE = (
    Spec("request_duration", "http.server.request.duration", HISTOGRAM, "s",
         "Duration of HTTP requests through the proxy, to the last byte sent to the client.", HTTP_DURATION_BUCKETS),
    Spec("added_duration", "otel_proxy.added.duration", HISTOGRAM, "s",
         "The proxy's own time on a request, with no labels: from its arrival until it was on its way to Ollama, and from Ollama's "
         "answer head until the client's (the Server-Timing header's figure).", ADDED_DURATION_BUCKETS),
    Spec("active_requests", "http.server.active_requests", UP_DOWN, "{request}", "HTTP requests the proxy is serving right now."),
    Spec("time_to_first_token", "gen_ai.server.time_to_first_token", HISTOGRAM, "s",
         "Time from the request's arrival to the first streamed chunk of a generation.", TIME_TO_FIRST_TOKEN_BUCKETS),
    # The same, per API route and without the model: a fleet-wide p95 sums this one (a
    # dozen series a host) rather than the per-model histogram above (docs/metrics.md).
    Spec("route_time_to_first_token", "ollama.time_to_first_token", HISTOGRAM, "s",
         "Time from the request's arrival to the first streamed chunk of a generation, per route, every model together.", TIME_TO_FIRST_TOKEN_BUCKETS),
    # An answer that opens with a tool call: Ollama sends the call whole once it is generated, so the time to it is
    # no time to a first token (docs/metrics.md); per route, every model together.
    Spec("time_to_tool_call", "ollama.time_to_tool_call", HISTOGRAM, "s",
         "Time from the request's arrival to a streamed answer's tool call, where the call came first: its whole generation, per route.",
         TIME_TO_FIRST_TOKEN_BUCKETS),
    Spec("time_per_output_token", "gen_ai.server.time_per_output_token", HISTOGRAM, "s",
         "Time per generated token after the first (Ollama's eval_duration / eval_count).", TIME_PER_OUTPUT_TOKEN_BUCKETS),
    Spec("genai_request_duration", "gen_ai.server.request.duration", HISTOGRAM, "s",
         "Duration of generation and embedding requests, to the last byte.", GENAI_REQUEST_DURATION_BUCKETS),
    Spec("token_usage", "gen_ai.client.token.usage", HISTOGRAM, "{token}",
         "Tokens per request as Ollama reported them, by gen_ai.token.type (input or output).", TOKEN_USAGE_BUCKETS),
    Spec("prompt_tokens", "ollama.prompt_tokens", COUNTER, "{token}", "Prompt tokens Ollama evaluated (prompt_eval_count, usage.prompt_tokens)."),
    # The prompt cache (Ollama 0.33.3 and later report it; docs/metrics.md, "The prompt cache"), per model and operation:
    # recorded only for requests whose cached count Ollama reported, so that the two give the cache-hit share.
    Spec("prompt_cached_tokens", "ollama.prompt_cached_tokens", COUNTER, "{token}",
         "Prompt tokens read from the runner's prompt cache (prompt_eval_cached_count, cached_tokens, cache_read_input_tokens)."),
    Spec("prompt_new_tokens", "ollama.prompt_new_tokens", COUNTER, "{token}",
         "Prompt tokens Ollama evaluated anew, of requests whose cached count it reported: with ollama.prompt_cached_tokens, the cache-hit share."),
    # The prompt rate on new tokens, per model: the new tokens and the time Ollama took for them, of requests that
    # report both (its native API).
    Spec("prompt_eval_new_tokens", "ollama.prompt_eval.new_tokens", COUNTER, "{token}",
         "Prompt tokens evaluated anew, of requests that report the cached count and prompt_eval_duration: over ollama.prompt_eval.time, the prompt rate."),
    Spec("prompt_eval_time", "ollama.prompt_eval.time", COUNTER, "s",
         "prompt_eval_duration of the same requests as ollama.prompt_eval.new_tokens."),
    # A turn that continued its conversation and read its prompt again (otel_proxy/continuations.py), per model and
    # ollama.cache.cause: how often, and the tokens it cost.
    Spec("prompt_cache_misses", "ollama.prompt_cache.misses", COUNTER, "{request}",
         "Turns that continued a conversation and read again a tenth or more of what the turn before left in the prompt cache, by ollama.cache.cause."),
    Spec("prompt_cache_read_again", "ollama.prompt_cache.read_again_tokens", COUNTER, "{token}",
         "Prompt tokens such turns evaluated again that the turn before had left in the cache, by ollama.cache.cause."),
    Spec("generated_tokens", "ollama.generated_tokens", COUNTER, "{token}",
         "Tokens Ollama generated (eval_count, usage.completion_tokens; content chunks where unreported)."),
    Spec("load_duration", "ollama.load.duration", HISTOGRAM, "s", "Ollama's load_duration: time spent loading the model for a request.", OLLAMA_PHASE_BUCKETS),
    Spec("prompt_eval_duration", "ollama.prompt_eval.duration", HISTOGRAM, "s", "Ollama's prompt_eval_duration: time spent evaluating the prompt.",
         OLLAMA_PHASE_BUCKETS),
    Spec("eval_duration", "ollama.eval.duration", HISTOGRAM, "s", "Ollama's eval_duration: time spent generating the response tokens.", OLLAMA_PHASE_BUCKETS),
    Spec("model_loads", "ollama.model_loads", COUNTER, "{load}",
         "Model loads, by ollama.load.reason: cold (the model was not resident) or reload (its runner options changed, ollama.load.cause naming them). "
         "A request that only waited is never one."),
    # Who is using the server (otel_proxy/clients.py): counters and one histogram, per client only.
    Spec("client_requests", "ollama.client.requests", COUNTER, "{request}",
         "Generation and embedding requests per client (ollama.client), with error.type when they failed."),
    Spec("client_tokens", "ollama.client.tokens", COUNTER, "{token}",
         "Tokens per client and gen_ai.token.type (input, output, and cached_input: the input tokens read from the prompt cache), as Ollama reported them."),
    Spec("client_request_duration", "ollama.client.request.duration", HISTOGRAM, "s",
         "Generation and embedding requests per client, to the last byte: its share of the server's time, its latency.", CLIENT_DURATION_BUCKETS),
    Spec("queue_wait", "ollama.queue_wait", HISTOGRAM, "s",
         "The time a request spent waiting in Ollama: in the pending queue behind loads (any model's), for the old runner's requests before a "
         "reload, and for a free OLLAMA_NUM_PARALLEL slot.", QUEUE_WAIT_BUCKETS),
    Spec("scheduler_time", "ollama.scheduler.time", COUNTER, "s",
         "Seconds of requests' time before they ran, by ollama.phase: pending (the load queue, with ollama.behind naming the model whose load held "
         "it up), drain (before a reload), load, slot (waiting for a free slot), unknown (load_duration not told apart)."),
    Spec("requests_in_flight", "ollama.requests_in_flight", UP_DOWN, "{request}", "Requests to each model that Ollama has not finished answering."),
    Spec("context_fill", "ollama.context_fill", HISTOGRAM, "1", "Prompt plus output tokens as a share of the runner's context length.", CONTEXT_FILL_BUCKETS),
    Spec("context_full", "ollama.context_full", COUNTER, "{request}",
         "Requests that filled at least 95 % of the context: Ollama truncated the prompt, the model forgot its start."),
)


class ProxyInstruments:
    """Every instrument of the catalogue, created once per process, as an attribute named by its spec.

    Each is wrapped in a Recorder (otel_proxy/recorder.py): the same records, at a
    quarter of the SDK's cost for attribute sets already seen.
    """

    request_duration: Recorder
    added_duration: Recorder
    active_requests: Recorder
    time_to_first_token: Recorder
    route_time_to_first_token: Recorder
    time_to_tool_call: Recorder
    time_per_output_token: Recorder
    genai_request_duration: Recorder
    token_usage: Recorder
    prompt_tokens: Recorder
    prompt_cached_tokens: Recorder
    prompt_new_tokens: Recorder
    prompt_eval_new_tokens: Recorder
    prompt_eval_time: Recorder
    prompt_cache_misses: Recorder
    prompt_cache_read_again: Recorder
    generated_tokens: Recorder
    load_duration: Recorder
    prompt_eval_duration: Recorder
    eval_duration: Recorder
    model_loads: Recorder
    client_requests: Recorder
    client_tokens: Recorder
    client_request_duration: Recorder
    queue_wait: Recorder
    scheduler_time: Recorder
    requests_in_flight: Recorder
    context_fill: Recorder
    context_full: Recorder

    def __init__(self, meter: Meter, shortcut: bool = True) -> None:
        """``shortcut``: the Recorders may bypass the SDK's per-record work (OLLAMA_OTEL_SHORTCUTS)."""
        for spec in CATALOGUE:
            setattr(self, spec.attribute, Recorder(spec.create(meter), shortcut=shortcut))


# The series budget (docs/metrics.md, "Series budget"), from the catalogue above. A histogram
# exports a series per boundary, +Inf, _sum and _count; a counter one.
GENERATIONS = ("chat", "text_completion")  # the operations that stream tokens
OPERATIONS = (*GENERATIONS, "embeddings")


def histogram_series(boundaries: tuple[float, ...]) -> int:
    return len(boundaries) + 3


def series_per_model() -> dict[str, int]:
    """What one model label costs, family by family, when every API is used with it and no request fails.

    Each error type a (model, operation) meets adds one request-duration histogram more.
    """
    return {
        "gen_ai_server_request_duration_seconds": len(OPERATIONS) * histogram_series(GENAI_REQUEST_DURATION_BUCKETS),
        "gen_ai_server_time_to_first_token_seconds": len(GENERATIONS) * histogram_series(TIME_TO_FIRST_TOKEN_BUCKETS),
        "gen_ai_server_time_per_output_token_seconds": len(GENERATIONS) * histogram_series(TIME_PER_OUTPUT_TOKEN_BUCKETS),
        # input and output for the generations, input only for embeddings
        "gen_ai_client_token_usage": (2 * len(GENERATIONS) + 1) * histogram_series(TOKEN_USAGE_BUCKETS),
        "ollama_prompt_tokens": len(OPERATIONS),
        "ollama_prompt_cached_tokens": len(GENERATIONS),
        "ollama_prompt_new_tokens": len(GENERATIONS),
        "ollama_prompt_eval_new_tokens": 1,
        "ollama_prompt_eval_time_seconds": 1,
        # one a cause of a lost cache that happened
        "ollama_prompt_cache_misses": len(CAUSES),
        "ollama_prompt_cache_read_again_tokens": len(CAUSES),
        "ollama_generated_tokens": len(GENERATIONS),
        # Ollama's phases are the model's, whatever the API: per model only
        "ollama_load_duration_seconds": histogram_series(OLLAMA_PHASE_BUCKETS),
        "ollama_prompt_eval_duration_seconds": histogram_series(OLLAMA_PHASE_BUCKETS),
        "ollama_eval_duration_seconds": histogram_series(OLLAMA_PHASE_BUCKETS),
        "ollama_model_loads": len(LOAD_REASONS),
        "ollama_queue_wait_seconds": histogram_series(QUEUE_WAIT_BUCKETS),
        # one a phase; pending one more for each other model whose loads held this one up
        "ollama_scheduler_time_seconds": len(PHASES),
        "ollama_requests_in_flight": 1,
        "ollama_context_fill": histogram_series(CONTEXT_FILL_BUCKETS),
        "ollama_context_full": 1,
    }


def series_per_model_error() -> int:
    """A (model, operation, error type) combination: one request-duration histogram."""
    return histogram_series(GENAI_REQUEST_DURATION_BUCKETS)


def model_labels(max_models: int) -> int:
    """--max-models names, plus "other" (past the bound) and "unknown" (no model in the body)."""
    return max_models + 2
