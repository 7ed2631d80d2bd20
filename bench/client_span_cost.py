"""What the CLIENT span of a call to Ollama costs the proxy, per call, in a loop.

    python bench/client_span_cost.py [--calls 20000]

Calls a transport that answers at once, the way the forwarder calls the upstream
transport (an ``httpx.Request`` built as the forwarder builds it, inside the context of a
proxy span), 20,000 times for each way of making the span: none; opentelemetry-
instrumentation-httpx (``--client-spans httpx``), with the span unrecorded (no trace
exporter: the sampler is parentbased_always_off) and recorded and exported over OTLP/HTTP
to bench/otlp_discard.py; and the proxy's own (otel_proxy/upstream_spans.py, the default),
the same two ways. Prints microseconds a call; each way runs in a fresh process.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WAYS = ("none", "httpx unrecorded", "httpx exported", "proxy unrecorded", "proxy exported")
HEADERS = [(b"host", b"127.0.0.1:11434"), (b"content-type", b"application/json"), (b"user-agent", b"curl/8.5.0"), (b"accept", b"*/*"), (b"content-length", b"13")]


def one_way(way: str, calls: int, endpoint: str) -> float:
    """Microseconds a call for one way of making the span, in this process."""
    import httpx
    from opentelemetry import context as otel_context
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import SpanKind

    from otel_proxy.upstream_spans import ClientSpanTransport
    from otel_proxy.spans import FinishedSpans
    from telemetry import setup_telemetry

    class Answering(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers=[(b"content-type", b"application/x-ndjson")], stream=httpx.ByteStream(b"{}\n"))

    telemetry = setup_telemetry("bench", "client-span-cost", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint} if way.endswith("exported") else {})
    spans = FinishedSpans(telemetry, "otel_proxy")
    transport: httpx.AsyncBaseTransport = Answering()
    if way.startswith("proxy"):
        transport = ClientSpanTransport(transport, spans)
    elif way.startswith("httpx"):
        client = httpx.AsyncClient(transport=transport)
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=telemetry.tracer_provider, meter_provider=NoOpMeterProvider())
    url = httpx.URL("http://127.0.0.1:11434/api/generate")

    async def run(n: int) -> None:
        for _ in range(n):
            server_span = spans.root(None, "POST /api/generate", SpanKind.SERVER, {})
            token = otel_context.attach(FinishedSpans.context_of(server_span))
            request = httpx.Request("POST", url, headers=list(HEADERS), stream=httpx.ByteStream(b'{"model":"m"}'), extensions={"timeout": {}})
            response = await transport.handle_async_request(request)
            await response.aclose()
            otel_context.detach(token)

    asyncio.run(run(calls // 10))  # warm: caches filled, code paths hot
    started = time.perf_counter()
    asyncio.run(run(calls))
    elapsed = time.perf_counter() - started
    telemetry.shutdown()
    return elapsed / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # one way, in a child process
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(f"{one_way(args.way, args.calls, args.endpoint):.1f}")
        return
    from bench.proxy_overhead import otlp_discard

    with otlp_discard() as receiver:
        print("| client span | µs a call |\n|---|---|")
        for way in WAYS:
            out = subprocess.run(
                [sys.executable, __file__, "--way", way, "--calls", str(args.calls), "--endpoint", receiver.url],
                capture_output=True, text=True, check=True,
            ).stdout.split()[-1]
            print(f"| {way} | {out} |", flush=True)


if __name__ == "__main__":
    main()
