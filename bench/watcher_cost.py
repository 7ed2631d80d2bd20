"""What the proxy's watchers cost on the hot path: nanoseconds of ``feed`` per chunk, per API.

Each stream is recorded once from the fake Ollama (64 tokens, the exact bytes it writes, one
chunk a write as Ollama flushes them), then fed to a fresh watcher of its route many times;
``report`` (once per request, off the per-chunk path) is timed apart. The "no watcher"
row is the cost of the loop itself: a call to a method that does nothing.

    python bench/watcher_cost.py [--repeat 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_proxy.watch import NOTHING_TO_WATCH, watcher_for  # noqa: E402
from tests.fake.ollama import create_app  # noqa: E402

STREAMS = {
    "/api/chat": ("application/x-ndjson", {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 64}}, b"\n"),
    "/v1/chat/completions": ("text/event-stream", {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 64,
                                                   "stream_options": {"include_usage": True}}, b"\n\n"),
    "/v1/responses": ("text/event-stream", {"model": "llama3.2:1b", "input": "hi", "stream": True, "max_output_tokens": 64}, b"\n\n"),
    "/v1/messages": ("text/event-stream", {"model": "llama3.2:1b", "max_tokens": 65, "messages": [{"role": "user", "content": "hi"}], "stream": True}, b"\n\n"),
}


def recorded(client: TestClient, route: str, body: dict, separator: bytes) -> list[bytes]:
    text = client.post(route, json=body).content
    return [part + separator for part in text.split(separator) if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    client = TestClient(create_app(token_delay=0, load_delay=0))
    client.post("/fake/configure", json={"answer_tokens": 64})
    print("| route | chunks a stream | feed (ns / chunk) | no watcher (ns / chunk) | report (µs / request) |")
    print("|---|---|---|---|---|")
    for route, (content_type, body, separator) in STREAMS.items():
        chunks = recorded(client, route, body, separator)
        timings = {}
        for name, make in (("feed", lambda: watcher_for(route, content_type)), ("none", lambda: NOTHING_TO_WATCH)):
            best = float("inf")
            for _ in range(5):
                watchers = [make() for _ in range(args.repeat)]
                started = time.perf_counter_ns()
                for watcher in watchers:
                    feed = watcher.feed
                    for chunk in chunks:
                        feed(chunk)
                best = min(best, (time.perf_counter_ns() - started) / (args.repeat * len(chunks)))
            timings[name] = best
            if name == "feed":
                started = time.perf_counter_ns()
                for watcher in watchers:
                    report = watcher.report()
                timings["report"] = (time.perf_counter_ns() - started) / args.repeat / 1000
                assert report.output_tokens == 64 and report.error is None, (route, report)
        print(f"| {route} | {len(chunks)} | {timings['feed']:.0f} | {timings['none']:.0f} | {timings['report']:.1f} |")


if __name__ == "__main__":
    main()
