"""The proxy's metric catalogue: every instrument, its unit, description and buckets.

docs/metrics.md lists the same metrics under their Prometheus names; a test keeps the
two in step. Bucket boundaries follow the OpenTelemetry GenAI semantic conventions,
extended where a local model needs it (cold loads take tens of seconds, and a fast
GPU emits a token every few milliseconds).
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.metrics import Meter

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
CONTEXT_FILL_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0)  # fmt: skip
CONTEXT_FULL = 0.95  # at or above: the prompt was (very likely) truncated
LOAD_REASONS = ("cold", "reload")
# Where a request's time went before it ran (otel_proxy/scheduling.py): ollama.scheduler.time's ollama.phase.
PHASES = ("pending", "drain", "load", "slot", "unknown")

OTHER_MODEL = "other"
UNKNOWN_MODEL = "unknown"
# http.request.method as the HTTP semantic conventions bound it: the known methods, the rest "_OTHER".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER_METHOD = "_OTHER"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


class ModelNames:
    """Bounds ``gen_ai.request.model``: the first ``limit`` names seen, then ``other``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def label(self, model: str | None, admit: bool = True) -> str:
        """The label for ``model``; a name not yet seen gets a slot only if ``admit``."""
        if not model:
            return UNKNOWN_MODEL
        if model in self._seen:
            return model
        if not admit:
            return OTHER_MODEL
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(model)
                return model
        return OTHER_MODEL


class ProxyInstruments:
    """Every instrument the proxy records, created once per process.

    Each is wrapped in a Recorder (otel_proxy/recorder.py): the same records, at a
    quarter of the SDK's cost for attribute sets already seen.
    """

    def __init__(self, meter: Meter, shortcut: bool = True) -> None:
        """``shortcut``: the Recorders may bypass the SDK's per-record work (OLLAMA_OTEL_SHORTCUTS)."""

        def wrap(instrument: Any) -> Recorder:
            return Recorder(instrument, shortcut=shortcut)

        self.request_duration = wrap(
            meter.create_histogram(
                "http.server.request.duration",
                unit="s",
                description="Duration of HTTP requests through the proxy, to the last byte sent to the client.",
                explicit_bucket_boundaries_advisory=HTTP_DURATION_BUCKETS,
            )
        )
        self.active_requests = wrap(
            meter.create_up_down_counter(
                "http.server.active_requests",
                unit="{request}",
                description="HTTP requests the proxy is serving right now.",
            )
        )
        self.time_to_first_token = wrap(
            meter.create_histogram(
                "gen_ai.server.time_to_first_token",
                unit="s",
                description="Time from the request's arrival to the first streamed chunk of a generation.",
                explicit_bucket_boundaries_advisory=TIME_TO_FIRST_TOKEN_BUCKETS,
            )
        )
        # The same, per API route and without the model: a fleet-wide p95 sums this one (a
        # dozen series a host) rather than the per-model histogram above (docs/metrics.md).
        self.route_time_to_first_token = wrap(
            meter.create_histogram(
                "ollama.time_to_first_token",
                unit="s",
                description="Time from the request's arrival to the first streamed chunk of a generation, per route, every model together.",
                explicit_bucket_boundaries_advisory=TIME_TO_FIRST_TOKEN_BUCKETS,
            )
        )
        self.time_per_output_token = wrap(
            meter.create_histogram(
                "gen_ai.server.time_per_output_token",
                unit="s",
                description="Time per generated token after the first (Ollama's eval_duration / eval_count).",
                explicit_bucket_boundaries_advisory=TIME_PER_OUTPUT_TOKEN_BUCKETS,
            )
        )
        self.genai_request_duration = wrap(
            meter.create_histogram(
                "gen_ai.server.request.duration",
                unit="s",
                description="Duration of generation and embedding requests, to the last byte.",
                explicit_bucket_boundaries_advisory=GENAI_REQUEST_DURATION_BUCKETS,
            )
        )
        self.token_usage = wrap(
            meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Tokens per request as Ollama reported them, by gen_ai.token.type (input or output).",
                explicit_bucket_boundaries_advisory=TOKEN_USAGE_BUCKETS,
            )
        )
        self.prompt_tokens = wrap(
            meter.create_counter(
                "ollama.prompt_tokens",
                unit="{token}",
                description="Prompt tokens Ollama evaluated (prompt_eval_count, usage.prompt_tokens).",
            )
        )
        self.generated_tokens = wrap(
            meter.create_counter(
                "ollama.generated_tokens",
                unit="{token}",
                description="Tokens Ollama generated (eval_count, usage.completion_tokens; content chunks where unreported).",
            )
        )
        self.load_duration = wrap(
            meter.create_histogram(
                "ollama.load.duration",
                unit="s",
                description="Ollama's load_duration: time spent loading the model for a request.",
                explicit_bucket_boundaries_advisory=OLLAMA_PHASE_BUCKETS,
            )
        )
        self.prompt_eval_duration = wrap(
            meter.create_histogram(
                "ollama.prompt_eval.duration",
                unit="s",
                description="Ollama's prompt_eval_duration: time spent evaluating the prompt.",
                explicit_bucket_boundaries_advisory=OLLAMA_PHASE_BUCKETS,
            )
        )
        self.eval_duration = wrap(
            meter.create_histogram(
                "ollama.eval.duration",
                unit="s",
                description="Ollama's eval_duration: time spent generating the response tokens.",
                explicit_bucket_boundaries_advisory=OLLAMA_PHASE_BUCKETS,
            )
        )
        self.model_loads = wrap(
            meter.create_counter(
                "ollama.model_loads",
                unit="{load}",
                description="Model loads, by ollama.load.reason: cold (the model was not resident) or reload (its runner options changed, ollama.load.cause naming them). A request that only waited is never one.",
            )
        )
        # Who is using the server (otel_proxy/clients.py): counters and one histogram, per client only.
        self.client_requests = wrap(
            meter.create_counter(
                "ollama.client.requests",
                unit="{request}",
                description="Generation and embedding requests per client (ollama.client), with error.type when they failed.",
            )
        )
        self.client_tokens = wrap(
            meter.create_counter(
                "ollama.client.tokens",
                unit="{token}",
                description="Tokens per client and gen_ai.token.type (input, output), as Ollama reported them.",
            )
        )
        self.client_request_duration = wrap(
            meter.create_histogram(
                "ollama.client.request.duration",
                unit="s",
                description="Generation and embedding requests per client, to the last byte: its share of the server's time, its latency.",
                explicit_bucket_boundaries_advisory=CLIENT_DURATION_BUCKETS,
            )
        )
        self.queue_wait = wrap(
            meter.create_histogram(
                "ollama.queue_wait",
                unit="s",
                description="The time a request spent waiting in Ollama: in the pending queue behind loads (any model's), for the old runner's requests before a reload, and for a free OLLAMA_NUM_PARALLEL slot.",
                explicit_bucket_boundaries_advisory=QUEUE_WAIT_BUCKETS,
            )
        )
        self.scheduler_time = wrap(
            meter.create_counter(
                "ollama.scheduler.time",
                unit="s",
                description="Seconds of requests' time before they ran, by ollama.phase: pending (the load queue, with ollama.behind naming the model whose load held it up), drain (before a reload), load, slot (waiting for a free slot), unknown (load_duration not told apart).",
            )
        )
        self.requests_in_flight = wrap(
            meter.create_up_down_counter(
                "ollama.requests_in_flight",
                unit="{request}",
                description="Requests to each model that Ollama has not finished answering.",
            )
        )
        self.context_fill = wrap(
            meter.create_histogram(
                "ollama.context_fill",
                unit="1",
                description="Prompt plus output tokens as a share of the runner's context length.",
                explicit_bucket_boundaries_advisory=CONTEXT_FILL_BUCKETS,
            )
        )
        self.context_full = wrap(
            meter.create_counter(
                "ollama.context_full",
                unit="{request}",
                description="Requests that filled at least 95 % of the context: Ollama truncated the prompt, the model forgot its start.",
            )
        )


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
