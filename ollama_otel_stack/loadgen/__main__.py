"""``ollama-load``: send realistic traffic through the proxy and print what it saw."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import httpx

from ollama_otel_stack.loadgen.apis import APIS
from ollama_otel_stack.loadgen.traffic import DEFAULT_PROMPTS, Plan, first_model, run
from ollama_otel_stack.stack.defaults import PROXY_PORT, local_url


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ollama-load", description="Generation traffic against Ollama, through the proxy, on one of its APIs.")
    parser.add_argument("--url", default=local_url(PROXY_PORT), help="the proxy (or Ollama) base URL")
    parser.add_argument("--model", help="model to use (default: the first one Ollama lists)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to send traffic for")
    parser.add_argument("--prompt-file", type=Path, help="prompts, one a line")
    parser.add_argument("--max-tokens", type=int, default=64, help="num_predict for each request")
    parser.add_argument("--api", choices=sorted(APIS), default="native",
                        help="native (/api/chat and /api/generate), openai (/v1/chat/completions), responses (/v1/responses) or anthropic (/v1/messages)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    prompts = DEFAULT_PROMPTS
    if args.prompt_file:
        prompts = tuple(line.strip() for line in args.prompt_file.read_text().splitlines() if line.strip())
        if not prompts:
            parser.error(f"{args.prompt_file} has no prompts")
    try:
        model = args.model or first_model(url)
    except (httpx.HTTPError, ValueError) as exc:
        print(f"ollama-load: cannot reach {url} ({exc}); is the proxy running (make up)?", file=sys.stderr)
        return 2
    if not model:
        print(f"ollama-load: Ollama behind {url} has no model; pull one first (ollama pull llama3.2:1b)", file=sys.stderr)
        return 2
    plan = Plan(url=url, model=model, concurrency=args.concurrency, duration_s=args.duration, prompts=prompts, max_tokens=args.max_tokens, api=args.api)
    summary = asyncio.run(run(plan)).summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['requests']} requests to {model} ({args.api} API) in {summary['seconds']:.1f} s, {summary['errors']} errors")
        print(f"tokens: {summary['output_tokens']} generated, {summary['tokens_per_second']:.1f} tokens/s")
        print(f"latency: mean {_seconds(summary['latency_mean_s'])}, p50 {_seconds(summary['latency_p50_s'])}, p95 {_seconds(summary['latency_p95_s'])}")
        print(f"time to first token: p50 {_seconds(summary['ttft_p50_s'])}, p95 {_seconds(summary['ttft_p95_s'])}, p99 {_seconds(summary['ttft_p99_s'])}")
        for sample in summary["error_samples"]:
            print(f"error: {sample}")
    return 1 if summary["requests"] and summary["errors"] == summary["requests"] else 0


if __name__ == "__main__":
    sys.exit(main())
