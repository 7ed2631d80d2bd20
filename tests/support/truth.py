"""Ground truth over time: the fake's generated tokens sampled, read at any instant, and the histogram bucket a value falls in."""

from __future__ import annotations

import bisect
import threading
import time

import httpx

from otel_proxy.instruments import HTTP_DURATION_BUCKETS
from tests.support.harness import Server


def sample_fake_tokens(fake: Server, stop: threading.Event, into: list[tuple[float, int]]) -> None:
    with httpx.Client() as client:
        while not stop.is_set():
            into.append((time.time(), client.get(fake.url + "/fake/stats").json()["generated_tokens"]))
            time.sleep(0.25)



def interpolate(samples: list[tuple[float, int]], at: float) -> float:
    times = [t for t, _ in samples]
    i = bisect.bisect_left(times, at)
    (t0, v0), (t1, v1) = samples[i - 1], samples[i]
    return v0 + (v1 - v0) * (at - t0) / (t1 - t0)



def bucket_around(value: float, buckets: tuple[float, ...] = HTTP_DURATION_BUCKETS) -> tuple[float, float]:
    bounds = (0.0, *buckets, float("inf"))
    i = bisect.bisect_left(bounds, value)
    return bounds[max(0, i - 1)], bounds[min(len(bounds) - 1, i)]
