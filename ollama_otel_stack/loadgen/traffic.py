"""Send generation traffic on one of Ollama's APIs, streaming and not, and measure what comes back."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ollama_otel_stack.loadgen.apis import APIS, Counts

DEFAULT_PROMPTS = (
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about a server room at night.",
    "List three uses of a hash map.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Summarise the plot of Hamlet in one paragraph.",
)


@dataclass
class Plan:
    url: str
    model: str
    concurrency: int
    duration_s: float
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    stream_every: int = 4  # of every 4 requests, 3 stream and 1 does not
    max_tokens: int = 64
    timeout_s: float = 300.0
    api: str = "native"  # native, openai, responses or anthropic (loadgen/apis.py)


@dataclass
class Outcome:
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    output_tokens: int = 0
    input_tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    def summary(self) -> dict[str, Any]:
        wall = max(self.ended - self.started, 1e-9)

        def quantile(values: list[float], q: float) -> float | None:
            if not values:
                return None
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]

        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_samples": self.error_samples[:5],
            "seconds": wall,
            "output_tokens": self.output_tokens,
            "input_tokens": self.input_tokens,
            "tokens_per_second": self.output_tokens / wall,
            "latency_mean_s": statistics.fmean(self.latencies) if self.latencies else None,
            "latency_p50_s": quantile(self.latencies, 0.5),
            "latency_p95_s": quantile(self.latencies, 0.95),
            "latency_p99_s": quantile(self.latencies, 0.99),
            "ttft_p50_s": quantile(self.ttfts, 0.5),
            "ttft_p95_s": quantile(self.ttfts, 0.95),
            "ttft_p99_s": quantile(self.ttfts, 0.99),
        }


def _request(plan: Plan, number: int, prompt: str) -> tuple[str, dict[str, Any]]:
    return APIS[plan.api].request(plan.model, number, prompt, number % plan.stream_every != 0, plan.max_tokens)


async def _one(client: httpx.AsyncClient, plan: Plan, path: str, body: dict[str, Any], outcome: Outcome) -> None:
    api = APIS[plan.api]
    started = time.perf_counter()
    counts: Counts | None = None
    try:
        if body["stream"]:
            first = None
            async with client.stream("POST", plan.url + path, json=body) as answer:
                if answer.status_code != 200:
                    raise RuntimeError(f"{path}: HTTP {answer.status_code} {(await answer.aread())[:200]!r}")
                event = ""
                async for line in answer.aiter_lines():
                    if api.framing == "sse":
                        if line.startswith("event:"):
                            event = line[6:].strip()
                            continue
                        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                            continue
                        line = line[5:]
                    if not line.strip():
                        continue
                    data = json.loads(line)
                    if first is None and api.is_output(event, data):
                        first = time.perf_counter()
                    counts = api.counts(data) or counts
            if first is not None:
                outcome.ttfts.append(first - started)
        else:
            answer = await client.post(plan.url + path, json=body)
            if answer.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {answer.status_code} {answer.text[:200]}")
            counts = api.counts(answer.json())
        if counts is None:
            raise RuntimeError(f"{path}: the answer carried no token counts")
        if counts.error:
            raise RuntimeError(f"{path}: {counts.error}")
    except (httpx.HTTPError, RuntimeError, ValueError) as exc:
        outcome.errors += 1
        outcome.error_samples.append(str(exc) or type(exc).__name__)
        return
    finally:
        outcome.requests += 1
    outcome.latencies.append(time.perf_counter() - started)
    outcome.output_tokens += counts.output_tokens
    outcome.input_tokens += counts.input_tokens


async def run(plan: Plan) -> Outcome:
    outcome = Outcome()
    numbers = itertools.count()
    prompts = itertools.cycle(plan.prompts)
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    async with httpx.AsyncClient(timeout=plan.timeout_s, limits=limits, trust_env=False) as client:
        outcome.started = time.perf_counter()
        deadline = outcome.started + plan.duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                path, body = _request(plan, next(numbers), next(prompts))
                await _one(client, plan, path, body, outcome)

        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
        outcome.ended = time.perf_counter()
    return outcome


def first_model(url: str) -> str | None:
    """The first model Ollama lists, for users who did not name one."""
    tags = httpx.get(url + "/api/tags", timeout=10, trust_env=False).json()
    models = tags.get("models") or []
    return models[0]["name"] if models else None
