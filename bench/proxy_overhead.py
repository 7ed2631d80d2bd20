"""What the proxy adds: time to first token, latency, streamed chunks per second and the streams it sustains, direct vs proxied.

Every target is driven against the same fake Ollama in one run, so the figures are
ratios measured side by side (these machines are shared and noisy; absolute numbers
move, ratios much less). Targets: the fake directly; the proxy with all its telemetry on
(Prometheus, and every span and metric exported over OTLP/HTTP to a receiver that
discards them, bench/otlp_discard.py); optionally the same with the client spans made by
opentelemetry-instrumentation-httpx's wrapper rather than the proxy (`--client-spans
httpx`), the proxy with no trace exporter (the default of `make up`: metrics only),
the proxy with the OpenTelemetry SDK disabled (OTEL_SDK_DISABLED=true; the proxy's
client spans too), and nginx as a plain reverse proxy with buffering off (the reference
for the least a proxy adds).

    python bench/proxy_overhead.py                       # issue 2's figures: c=1 and c=32
    python bench/proxy_overhead.py --nginx --metrics-only --no-telemetry --httpx-client-spans --concurrency 1 32 128
    python bench/proxy_overhead.py --openai --nginx --litellm /path/to/litellm   # streaming /v1/chat/completions
    python bench/proxy_overhead.py --without-shortcuts --concurrency 32          # each SDK shortcut against the SDK's path
    python bench/proxy_overhead.py --api responses --nginx --concurrency 32      # also --api anthropic
    python bench/proxy_overhead.py --baseline /path/to/older-checkout --nginx    # the proxy before a change, side by side
    python bench/proxy_overhead.py --api chat openai anthropic --nginx --concurrency 1 --requests 400 --sustained   # issue 39's table
    python bench/proxy_overhead.py --api anthropic --nginx --body-kib 1400 --concurrency 1   # an agent's 1.4 MiB turn

Each row gives, against the direct row of the same round: the added time to first token
(p50, p99) and the added latency to the last byte (p50, p99), as 2026's gateway benchmarks
report them ("added p99": the target's p99 less the direct p99). --sustained then finds, per
target, the streams sustained: the most concurrent streams (--pace 20 ms a token, --tokens
a stream, starts spread over one stream) with no stream short of a token, no error and no
gap between two reads over 10 x the pace; concurrency doubles from 1 to --max-streams, then
halves the step between the last level held and the first lost (to within an eighth).
--body-kib pads every request to that size with earlier turns of a conversation, `stream`
written last as Claude Code writes it, so the proxy's full-body stream check and
conversation fingerprint run on every request.

Each row's connections start spread over one stream's length (the i-th of 32 starts
i/32 of 64 ms in), so a row measures a steady concurrency from its first request;
--burst starts them all at once instead (32 requests in the same millisecond, each on a
new connection), which is what a closed-loop client does when started naively.

With --api openai (or --openai) every target streams /v1/chat/completions (SSE) and "chunks" are
SSE events; --api responses and --api anthropic stream /v1/responses and /v1/messages, whose
"chunks" are their named events (the opening ones included);
LiteLLM's proxy (its `litellm` command, one worker, `ollama_chat` backend) can only be
measured that way, since it speaks the OpenAI API to clients and /api/chat to Ollama.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadclient import RunResult, run_measured  # noqa: E402
from tests.support.harness import Server, configure_fake, fake_ollama, free_port, otel_proxy, run_server  # noqa: E402

NGINX_CONF = """
worker_processes 1;
master_process off;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_max_body_size 0;  # an agent's turn passes 1 MiB (nginx's default limit)
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  upstream ollama {{ server 127.0.0.1:{upstream_port}; keepalive 512; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://ollama;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
    }}
  }}
}}
"""


@contextmanager
def nginx(upstream_port: int) -> Iterator[tuple[str, int]]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise SystemExit("nginx is not installed: apt-get install nginx-light (or drop --nginx)")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        conf = Path(directory) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=directory, port=port, upstream_port=upstream_port))
        args = [binary, "-p", directory, "-c", str(conf), "-g", "daemon off;"]
        with run_server(args, port, "/api/version") as server:
            yield server.url, server.process.pid


class PeakMemory:
    """The highest RSS of a process while the benchmark runs (sampled every 50 ms)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def litellm(binary: str, upstream: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    args = [binary, "--model", "ollama_chat/llama3.2:1b", "--api_base", upstream, "--port", str(port), "--num_workers", "1"]
    env = {"LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true", "LITELLM_LOG": "ERROR"}
    with run_server(args, port, "/health/liveliness", env=env, timeout=120) as server:
        yield server.url, server.process.pid


@contextmanager
def checkout_proxy(checkout: str, upstream: str, env: dict[str, str]) -> Iterator[tuple[str, int, str]]:
    """The proxy of another checkout, its modules first on the path; (url, pid, its commit)."""
    import subprocess

    commit = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    port = free_port()
    start = f"import runpy, sys; sys.path.insert(0, {checkout!r}); sys.argv[0] = 'otel_proxy'; runpy.run_module('otel_proxy', run_name='__main__')"
    args = [sys.executable, "-c", start, "--port", str(port), "--upstream", upstream]
    with run_server(args, port, "/-/healthy", env=env) as server:
        yield server.url, server.process.pid, commit


@contextmanager
def otlp_discard() -> Iterator[Server]:
    port = free_port()
    with run_server([sys.executable, "-m", "bench.otlp_discard", "--port", str(port)], port, "/") as server:
        yield server


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    pid: int | None
    model: str = "llama3.2:1b"


# What each --api streams: path, body, and the marker that counts one streamed chunk (line or SSE event).
APIS = {
    "native": "/api/generate (NDJSON)",
    "chat": "/api/chat (NDJSON)",
    "openai": "/v1/chat/completions (SSE)",
    "responses": "/v1/responses (SSE, named events)",
    "anthropic": "/v1/messages (SSE, named events)",
}


def padding(kib: int) -> list[dict]:
    """Earlier turns of a conversation, about ``kib`` KiB of them (an agent's long session)."""
    turn = "x" * 4000
    return [{"role": ("user", "assistant")[i % 2], "content": f"{i} {turn}"} for i in range(kib * 1024 // 4040)]


def request_for(api: str, model: str, tokens: int, body_kib: int = 0) -> tuple[str, dict, bytes]:
    """The path, body and chunk marker of one streamed request on ``api``; ``body_kib``: padded to about that size,
    ``stream`` its last key (an agent's turn)."""
    path, body, marker = _request_for(api, model, tokens, padding(body_kib) if body_kib else [])
    if body_kib:
        stream = body.pop("stream", None)
        body["stream"] = True if stream is None else stream
    return path, body, marker


def _request_for(api: str, model: str, tokens: int, earlier: list[dict]) -> tuple[str, dict, bytes]:
    messages = [*earlier, {"role": "user", "content": "benchmark"}]
    if api == "chat":
        return "/api/chat", {"model": model, "messages": messages, "options": {"num_predict": tokens}}, b"\n"
    if api == "openai":
        return "/v1/chat/completions", {"model": model, "messages": messages, "stream": True, "max_tokens": tokens}, b"data: "
    if api == "responses":
        return "/v1/responses", {"model": model, "input": messages, "stream": True, "max_output_tokens": tokens}, b"event: "
    if api == "anthropic":  # the fake answers `tokens` tokens by itself (answer_tokens), as max_tokens only caps
        return "/v1/messages", {"model": model, "max_tokens": tokens + 1, "messages": messages, "stream": True}, b"event: "
    prompt = "".join(message["content"] for message in messages)
    return "/api/generate", {"model": model, "prompt": prompt, "options": {"num_predict": tokens}}, b"\n"


def measure(
    target: Target, api: str, concurrency: int, total_requests: int, tokens: int, ramp_s: float = 0.0, body_kib: int = 0
) -> tuple[RunResult, float | None, float | None]:
    url, pid = target.url, target.pid
    path, body, marker = request_for(api, target.model, tokens, body_kib)
    per_worker = max(1, total_requests // concurrency)
    process = psutil.Process(pid) if pid else None
    cpu_before = sum(process.cpu_times()[:2]) if process else 0.0
    with ExitStack() as stack:
        memory = stack.enter_context(PeakMemory(pid)) if pid else None
        result = run_measured(url, path, body, concurrency, per_worker, marker, ramp_s)
    cpu_ms_per_thousand = None
    if result.errors and not result.requests:
        raise SystemExit(f"{target.name}: every request failed ({result.errors})")
    if process:
        cpu_ms_per_thousand = (sum(process.cpu_times()[:2]) - cpu_before) * 1000 / (result.lines / 1000)
    return result, cpu_ms_per_thousand, (memory.peak / 2**20 if memory else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--requests", type=int, default=320, help="requests per target and concurrency")
    parser.add_argument("--rounds", type=int, default=1, help="measure every target this many times, interleaved; report medians")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--token-delay", type=float, default=0.001)
    parser.add_argument("--nginx", action="store_true", help="also measure nginx (proxy_buffering off)")
    parser.add_argument("--no-telemetry", action="store_true", help="also measure the proxy with OTEL_SDK_DISABLED=true")
    parser.add_argument("--metrics-only", action="store_true", help="also measure the proxy with no trace exporter (make up's default)")
    parser.add_argument(
        "--without-conversations", action="store_true",
        help="also measure the proxy, all telemetry on, with --conversations 0: no body fingerprinted, no conversation followed",
    )
    parser.add_argument(
        "--httpx-client-spans", action="store_true",
        help="also measure the proxy with all telemetry on and its client spans made by opentelemetry-instrumentation-httpx (--client-spans httpx)",
    )
    parser.add_argument(
        "--without-shortcuts", action="store_true",
        help="also measure the proxy with all telemetry on and each SDK shortcut off in turn (OLLAMA_OTEL_SHORTCUTS), and with all off",
    )
    parser.add_argument("--api", choices=sorted(APIS), nargs="+", default=["native"], help="what every target streams, a table each: " + "; ".join(f"{k}: {v}" for k, v in APIS.items()))
    parser.add_argument("--openai", action="store_true", help="the same as --api openai")
    parser.add_argument("--baseline", metavar="CHECKOUT", help="also measure the proxy of another checkout (a git worktree of an older commit), all telemetry on")
    parser.add_argument("--litellm", metavar="BINARY", help="also measure LiteLLM's proxy (its `litellm` command); implies --api openai")
    parser.add_argument(
        "--burst", action="store_true",
        help="start every connection at once (concurrency requests in the same millisecond) instead of spreading the starts over one stream's length",
    )
    parser.add_argument("--body-kib", type=int, default=0, help="pad each request to about this many KiB of earlier turns, stream written last")
    parser.add_argument("--sustained", action="store_true", help="also find each target's streams sustained (see above)")
    parser.add_argument("--pace", type=float, default=0.02, help="--sustained: seconds between two tokens of a stream")
    parser.add_argument("--max-streams", type=int, default=512, help="--sustained: the most concurrent streams tried")
    parser.add_argument(
        "--pin", action="store_true",
        help="the fake Ollama alone on the first CPU, everything else (targets, this client) on the others: a proxy's CPU then "
             "cannot slow the fake's token pace (on two shared cores it does, by some 4 ms a 64-token stream)",
    )
    args = parser.parse_args()
    apis = ["openai"] if args.openai or args.litellm else args.api

    with ExitStack() as stack:
        fake = stack.enter_context(fake_ollama(token_delay=args.token_delay, load_delay=0))
        configure_fake(fake, answer_tokens=args.tokens)
        others = sorted(os.sched_getaffinity(0))[1:]
        if args.pin:
            if not others:
                raise SystemExit("--pin needs two CPUs")
            psutil.Process(fake.process.pid).cpu_affinity([sorted(os.sched_getaffinity(0))[0]])
            os.sched_setaffinity(0, others)  # this client, and every process started from here on
        targets = [Target("direct", fake.url, None)]
        receiver = stack.enter_context(otlp_discard())
        # All telemetry on: Prometheus, and every span and metric sent over OTLP/HTTP.
        exporting = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        proxy = stack.enter_context(otel_proxy(fake.url, env=exporting))
        targets.append(Target("proxy", proxy.url, proxy.process.pid))
        if args.httpx_client_spans:
            instrumented = stack.enter_context(otel_proxy(fake.url, "--client-spans", "httpx", env=exporting))
            targets.append(Target("proxy, --client-spans httpx", instrumented.url, instrumented.process.pid))
        if args.without_shortcuts:
            for name, shortcuts in (("metric records", "span_encoder,prometheus_page"), ("span encoder", "metric_records,prometheus_page"), ("all", "none")):
                slower = stack.enter_context(otel_proxy(fake.url, env={**exporting, "OLLAMA_OTEL_SHORTCUTS": shortcuts}))
                targets.append(Target(f"proxy, library path for {name}", slower.url, slower.process.pid))
        if args.without_conversations:
            unfollowed = stack.enter_context(otel_proxy(fake.url, "--conversations", "0", env=exporting))
            targets.append(Target("proxy, --conversations 0", unfollowed.url, unfollowed.process.pid))
        if args.metrics_only:
            plain = stack.enter_context(otel_proxy(fake.url))
            targets.append(Target("proxy, metrics only", plain.url, plain.process.pid))
        if args.no_telemetry:
            bare = stack.enter_context(otel_proxy(fake.url, env={"OTEL_SDK_DISABLED": "true"}))
            targets.append(Target("proxy, telemetry off", bare.url, bare.process.pid))
        if args.baseline:
            older = stack.enter_context(checkout_proxy(args.baseline, fake.url, exporting))
            targets.append(Target(f"proxy at {older[2]}", older[0], older[1]))
        if args.nginx:
            url, pid = stack.enter_context(nginx(fake.port))
            targets.append(Target("nginx", url, pid))
        if args.litellm:
            url, pid = stack.enter_context(litellm(args.litellm, fake.url))
            targets.append(Target("LiteLLM 1.108.7", url, pid, model="ollama_chat/llama3.2:1b"))
        for api in apis:
            latency_table(api, targets, args)
            if args.sustained:
                configure_fake(fake, token_delay=args.pace)
                sustained_table(api, targets, args)
                configure_fake(fake, token_delay=args.token_delay)


def latency_table(api: str, targets: list[Target], args: argparse.Namespace) -> None:
    widest = max(args.concurrency)
    for target in targets:  # warm up: model loaded, caches hot, as many upstream connections open as the widest row uses
        measure(Target(target.name, target.url, None, target.model), api, widest, 2 * widest, args.tokens, body_kib=args.body_kib)
    # One stream's length: the connections' starts spread over it make a steady load from the first request.
    ramp_s = 0.0 if args.burst else args.tokens * args.token_delay
    starts = "all connections starting at once" if args.burst else f"connections' starts spread over {ramp_s * 1000:g} ms"
    body = f", bodies of {args.body_kib:,} KiB" if args.body_kib else ""
    print(f"\n{APIS[api]}: {args.tokens} tokens a stream, {args.token_delay * 1000:g} ms a token{body}, {args.requests} requests a row, {args.rounds} round(s), {starts}\n")
    print("| target | concurrency | requests | errors | TTFT p50 (ms) | TTFT p99 (ms) | added TTFT p50 (ms) | added TTFT p99 (ms) | "
          "added latency p50 (ms) | added latency p99 (ms) | chunks/s | CPU ms / 1000 chunks | peak RSS (MiB) | added TTFT p50 by round (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        rows: dict[str, list[Row]] = {target.name: [] for target in targets}
        for _ in range(args.rounds):  # targets interleaved, so a noisy minute hits every one of them
            baseline: RunResult | None = None
            for target in targets:
                result, cpu, rss = measure(target, api, concurrency, args.requests, args.tokens, ramp_s, args.body_kib)
                baseline = baseline or result
                rows[target.name].append(Row(result, baseline, cpu, rss))
        for target in targets:
            print(summary(target.name, concurrency, rows[target.name]), flush=True)


def holds(target: Target, api: str, streams: int, args: argparse.Namespace, expected: int) -> str | None:
    """Why ``streams`` concurrent streams at the pace were not held, or None when they were."""
    path, body, marker = request_for(api, target.model, args.tokens, args.body_kib)
    result = run_measured(target.url, path, body, streams, 1, marker, args.tokens * args.pace)
    if result.errors:
        return f"{result.errors} errors"
    short = sum(1 for marks in result.marks if marks < expected)
    if short:
        return f"{short} streams short of a token"
    worst = max(result.max_gap)
    return f"a gap of {worst * 1000:.0f} ms" if worst > 10 * args.pace else None


def streams_sustained(target: Target, api: str, args: argparse.Namespace, expected: int) -> tuple[int, str]:
    """The most streams held, and what the first level lost was lost to."""
    held, lost, why = 0, None, ""
    level = 1
    while level <= args.max_streams:
        problem = holds(target, api, level, args, expected)
        if problem:
            lost, why = level, problem
            break
        held, level = level, level * 2
    if lost is None:
        return held, f"held at --max-streams {args.max_streams}"
    while lost - held > max(1, held // 8):
        middle = (held + lost) // 2
        problem = holds(target, api, middle, args, expected)
        if problem:
            lost, why = middle, problem
        else:
            held = middle
    return held, f"{lost} lost to {why}"


def sustained_table(api: str, targets: list[Target], args: argparse.Namespace) -> None:
    path, body, marker = request_for(api, targets[0].model, args.tokens, args.body_kib)
    expected = run_measured(targets[0].url, path, body, 1, 1, marker).marks[0]  # the chunks of a whole stream, direct
    print(f"\nstreams sustained on {APIS[api]}: {args.tokens} tokens at {args.pace * 1000:g} ms a token, a stall a gap over {10 * args.pace * 1000:g} ms\n")
    print("| target | streams sustained | the next level |")
    print("|---|---|---|")
    for target in targets:
        held, why = streams_sustained(target, api, args, expected)
        print(f"| {target.name} | {held} | {why} |", flush=True)


@dataclass
class Row:
    result: RunResult
    baseline: RunResult
    cpu_ms: float | None
    rss_mib: float | None

    def added(self, q: float, of: str = "ttft") -> float:
        return (self.result.percentile(q, of) - self.baseline.percentile(q, of)) * 1000

    @property
    def added_p50(self) -> float:
        return self.added(50)


def summary(name: str, concurrency: int, rows: list[Row]) -> str:
    """One table line: the median of the rounds (per-round differences against direct), peak RSS the highest."""
    median = statistics.median
    cpu = [row.cpu_ms for row in rows if row.cpu_ms is not None]
    rss = [row.rss_mib for row in rows if row.rss_mib is not None]
    return (
        f"| {name} | {concurrency} | {sum(r.result.requests for r in rows)} | {sum(r.result.errors for r in rows)} | "
        f"{median(r.result.p50 for r in rows) * 1000:.2f} | {median(r.result.percentile(99) for r in rows) * 1000:.2f} | "
        f"{median(r.added(50) for r in rows):+.2f} | {median(r.added(99) for r in rows):+.2f} | "
        f"{median(r.added(50, 'latency') for r in rows):+.2f} | {median(r.added(99, 'latency') for r in rows):+.2f} | "
        f"{median(r.result.lines_per_second for r in rows):,.0f} | {f'{median(cpu):.1f}' if cpu else ''} | "
        f"{f'{max(rss):.0f}' if rss else ''} | {' '.join(f'{r.added_p50:+.2f}' for r in rows)} |"
    )


if __name__ == "__main__":
    main()
