"""Does a Prometheus scrape stall the streams? And what does a scrape cost?

For each number of models (default 3, 10 and 100, the default --max-models), a fresh proxy
in front of the fake Ollama gets every model used once on /api/generate, /api/chat and
/v1/chat/completions (the series a real model library makes). Then one long stream (1,500
tokens at 2 ms a token) is read twice, once alone and once while a scraper GETs /metrics
every --scrape-every seconds, and the gaps between its chunks are compared: max and p99;
"added" is the largest gap scraped less the largest alone (the goal: at most 10 ms). The
scraper is a process of its own, as Prometheus is, so its reading of the page does not hold
the GIL of the process that times the stream. The scrape's cost: the proxy's CPU per scrape
(idle otherwise) over --scrapes scrapes, per 10,000 series, and the size of the page.
--runs repeats each row with a fresh proxy.

    python bench/scrape_stall.py [--models 3 10 100] [--scrape-every 1.0] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.harness import configure_fake, fake_ollama, otel_proxy  # noqa: E402

ROUTES = ("/api/generate", "/api/chat", "/v1/chat/completions")


def body_for(route: str, model: str, tokens: int, stream: bool) -> dict:
    if route == "/api/generate":
        return {"model": model, "prompt": "bench", "stream": stream, "options": {"num_predict": tokens}}
    if route == "/api/chat":
        return {"model": model, "messages": [{"role": "user", "content": "bench"}], "stream": stream, "options": {"num_predict": tokens}}
    return {"model": model, "messages": [{"role": "user", "content": "bench"}], "stream": stream, "max_tokens": tokens}


def stream_gaps(url: str, model: str, tokens: int) -> list[float]:
    """Seconds between the chunks of one /api/generate stream, as the client reads them."""
    arrivals = []
    with httpx.stream("POST", url + "/api/generate", json=body_for("/api/generate", model, tokens, True), timeout=120) as answer:
        for _ in answer.iter_raw():
            arrivals.append(time.perf_counter())
    return [b - a for a, b in zip(arrivals, arrivals[1:])]


SCRAPER = """
import sys, time, httpx
url, every = sys.argv[1], float(sys.argv[2])
with httpx.Client(timeout=60) as client:
    while True:
        time.sleep(every)
        client.get(url).raise_for_status()
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * (len(ordered) - 1) + 0.5))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, nargs="+", default=[3, 10, 100])
    parser.add_argument("--scrape-every", type=float, default=1.0)
    parser.add_argument("--tokens", type=int, default=1500)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1, help="rows per number of models, each with a fresh proxy")
    args = parser.parse_args()
    print(f"one /api/generate stream of {args.tokens} tokens at 2 ms a token; a scrape every {args.scrape_every:g} s\n")
    print("| models | series | page (KiB) | scrape wall p50 (ms) | CPU ms / scrape | CPU ms / 10k series | max gap alone (ms) | max gap scraped (ms) | added (ms) | p99 gap alone (ms) | p99 gap scraped (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with fake_ollama(token_delay=0.0005, load_delay=0) as fake:
        for count in [count for count in args.models for _ in range(args.runs)]:
            names = [f"bench-model-{i}:7b" for i in range(count)]
            httpx.post(fake.url + "/fake/configure", json={"chunk_texts": {name: "tok " for name in names}}).raise_for_status()
            with otel_proxy(fake.url) as proxy:
                configure_fake(fake, token_delay=0.0005)
                with httpx.Client(timeout=60) as client:
                    for name in names:
                        for route in ROUTES:
                            client.post(proxy.url + route, json=body_for(route, name, 4, False)).raise_for_status()
                page = httpx.get(proxy.url + "/metrics").text
                series = sum(1 for line in page.splitlines() if line and not line.startswith("#"))
                process = psutil.Process(proxy.process.pid)
                walls = []
                cpu_before = sum(process.cpu_times()[:2])
                for _ in range(args.scrapes):
                    started = time.perf_counter()
                    httpx.get(proxy.url + "/metrics")
                    walls.append(time.perf_counter() - started)
                cpu_per_scrape = (sum(process.cpu_times()[:2]) - cpu_before) / args.scrapes * 1000
                configure_fake(fake, token_delay=0.002)
                alone = stream_gaps(proxy.url, names[0], args.tokens)
                scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, proxy.url + "/metrics", str(args.scrape_every)])
                try:
                    scraped = stream_gaps(proxy.url, names[0], args.tokens)
                finally:
                    scraper.kill()
                    scraper.wait()
                print(
                    f"| {count} | {series:,} | {len(page) / 1024:,.0f} | {statistics.median(walls) * 1000:.1f} | {cpu_per_scrape:.1f} | "
                    f"{cpu_per_scrape / series * 10_000:.1f} | {max(alone) * 1000:.1f} | {max(scraped) * 1000:.1f} | "
                    f"{(max(scraped) - max(alone)) * 1000:+.1f} | "
                    f"{percentile(alone, 99) * 1000:.1f} | {percentile(scraped, 99) * 1000:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
