"""End to end: fake Ollama ← proxy ← traffic generator, the hardware collector, and a real
Prometheus scraping both every second; the dashboard's own PromQL checked against ground truth."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from ollama_otel_stack.loadgen.traffic import Plan, run
from otel_proxy.instruments import TIME_TO_FIRST_TOKEN_BUCKETS
from tests.support.harness import Server, fake_ollama, free_port, fake_stats, hw_collector, monitored_ollama, otel_proxy, prometheus, scraped
from tests.support.otlp_sink import otlp_sink
from ui import queries, recent
from ui.queries import Filters, Prometheus
from tests.support.truth import bucket_around, interpolate, sample_fake_tokens

MODEL = "llama3.2:1b"


class Stack:
    def __init__(self, fake: Server, proxy: Server, collector: Server, prom: Server) -> None:
        self.fake, self.proxy, self.collector, self.prom = fake, proxy, collector, prom
        self.client = Prometheus(prom.url)

    def wait_for_scrapes(self, seconds: float = 2.5) -> None:
        time.sleep(seconds)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with monitored_ollama(tmp_path_factory.mktemp("sysfs")) as (fake, proxy, collector, prom):
        yield Stack(fake, proxy, collector, prom)


def test_dashboard_queries_match_ground_truth(stack: Stack):
    # Warm up: the model is loaded and every series exists before the measured window.
    httpx.post(stack.proxy.url + "/api/generate", json={"model": MODEL, "prompt": "warm", "stream": False}, timeout=30)
    stack.wait_for_scrapes()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_fake_tokens, args=(stack.fake, stop, samples))
    sampler.start()
    plan = Plan(url=stack.proxy.url, model=MODEL, concurrency=4, duration_s=16, max_tokens=24)
    try:
        outcome = asyncio.run(run(plan)).summary()
    finally:
        traffic_ended = time.time()
        stack.wait_for_scrapes(1.0)
        stop.set()
        sampler.join()
    stack.wait_for_scrapes()
    assert outcome["errors"] == 0 and outcome["requests"] > 20
    prom = stack.client
    everything = Filters()

    # Request count: exactly what was sent (plus the warm-up).
    sent = prom.scalar(f'sum(http_server_request_duration_seconds_count{{http_route=~"{queries.GENERATION_ROUTES}"}})')
    assert sent == outcome["requests"] + 1

    # Tokens per second over a 10 s window inside the steady traffic, against the fake's own count.
    at = traffic_ended - 3
    reported = prom.scalar(queries.tokens_per_second(everything, "10s"), at=at)
    truth = (interpolate(samples, at) - interpolate(samples, at - 10)) / 10
    assert truth > 0
    assert reported == pytest.approx(truth, rel=0.05)

    # Average latency of generation endpoints: the earlier dashboard's stuck 0.00.
    window = f"{int(time.time() - traffic_ended + 18)}s"
    average = prom.scalar(queries.average_latency(everything, window))
    assert average is not None and average > 0
    assert average == pytest.approx(outcome["latency_mean_s"], rel=0.15)

    # Percentiles from the histogram land in the bucket of the client-side truth.
    for q, truth_key in ((0.5, "latency_p50_s"), (0.95, "latency_p95_s"), (0.99, "latency_p99_s")):
        estimate = prom.scalar(queries.latency_quantile(q, everything, window))
        low, high = bucket_around(outcome[truth_key])
        assert low * 0.9 <= estimate <= high * 1.1, (q, estimate, outcome[truth_key])

    assert prom.scalar(queries.success_rate(everything, window)) == 1.0
    # Time to first token p95 against the clients' own clock (the streamed requests; the proxy starts its clock
    # a little later than the client, so the bucket below a boundary the client's value just passed counts too).
    estimate = prom.scalar(queries.time_to_first_token_quantile(0.95, everything, window))
    client_p95 = outcome["ttft_p95_s"]
    low, high = bucket_around(client_p95 * 0.95, TIME_TO_FIRST_TOKEN_BUCKETS)[0], bucket_around(client_p95, TIME_TO_FIRST_TOKEN_BUCKETS)[1]
    assert client_p95 > 0 and low * 0.9 <= estimate <= high * 1.1, (estimate, client_p95)
    assert prom.scalar(queries.active_requests(everything)) == 0
    used, limit = prom.scalar(queries.memory(everything)["used"]), prom.scalar(queries.memory(everything)["limit"])
    assert 0 < used < limit
    assert 0 <= prom.scalar('sum(system_cpu_utilization{cpu_logical_number=""})') <= 1
    # This host has no GPU source: no data, not zero.
    assert prom.scalar(queries.gpu_utilization(everything)) is None
    assert prom.scalar(queries.joules_per_token(everything, window)) is None
    loaded = dict((labels["model"], value) for labels, value in prom.vector(queries.loaded_models(everything)["vram_bytes"]))
    assert loaded[MODEL] == 1_321_098_329


def test_no_traffic_is_no_data_not_zero(stack: Stack):
    quiet = Filters(model="a-model-nobody-used")
    assert stack.client.scalar(queries.average_latency(Filters(host="10.9.9.9"), "1m")) is None
    assert stack.client.scalar(queries.tokens_per_second(quiet, "1m")) is None


def test_two_proxies_in_front_of_two_ollamas_are_separable_in_one_prometheus():
    with (
        fake_ollama(token_delay=0.001) as fake_a,
        fake_ollama(token_delay=0.001) as fake_b,
        otel_proxy(fake_a.url, host="127.0.0.1") as proxy_a,
        otel_proxy(fake_b.url, host="127.0.0.2") as proxy_b,
        prometheus({"otel-proxy": [f"127.0.0.1:{proxy_a.port}", f"127.0.0.2:{proxy_b.port}"]}) as prom,
    ):
        def chat(proxy: Server, count: int) -> None:
            for _ in range(count):
                httpx.post(proxy.url + "/api/chat", json={"model": MODEL, "messages": [], "stream": False}, timeout=30)

        chat(proxy_a, 1)
        chat(proxy_b, 1)
        scraped(prom.url)  # the series exist before the rest, so their rates have two points
        chat(proxy_a, 2)
        chat(proxy_b, 4)
        scraped(prom.url)
        client = Prometheus(prom.url)
        per_instance = {labels["instance"]: value for labels, value in client.vector("sum by (instance) (http_server_request_duration_seconds_count)")}
        assert per_instance == {f"127.0.0.1:{proxy_a.port}": 3, f"127.0.0.2:{proxy_b.port}": 5}
        assert client.scalar(queries.request_rate(Filters(host="127.0.0.2"), "1m")) > 0
        tokens_b = client.scalar(f"sum(ollama_generated_tokens_total{Filters(host='127.0.0.2').labels()})")
        assert tokens_b == 5 * 8 == fake_stats(fake_b)["generated_tokens"]
        assert client.label_values("instance", "http_server_active_requests") == sorted(per_instance)
        # The request list follows the Instance picker: each proxy's own, or every one's merged by time.
        url_b = f"http://127.0.0.2:{proxy_b.port}"
        assert recent.proxy_urls(client, Filters("127.0.0.2"), "http://fallback") == [url_b]
        only_b, unreachable = recent.merged_requests(recent.proxy_urls(client, Filters("127.0.0.2"), "http://fallback"))
        assert len(only_b) == 5 and {e["instance"] for e in only_b} == {f"127.0.0.2:{proxy_b.port}"} and unreachable == []
        everything, _ = recent.merged_requests(recent.proxy_urls(client, Filters(), "http://fallback"))
        assert len(everything) == 8 and [e["start_time"] for e in everything] == sorted((e["start_time"] for e in everything), reverse=True)
        assert recent.proxy_urls(Prometheus(f"http://127.0.0.1:{free_port()}"), Filters(), "http://fallback") == ["http://fallback"]


def test_spans_and_metrics_are_delivered_over_otlp(fake, tmp_path):
    env = {"OTEL_METRIC_EXPORT_INTERVAL": "500", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with otlp_sink() as sink:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
        with otel_proxy(fake.url, env=env) as proxy, hw_collector(fake.url, "--interval", "0.5", "--sysfs-root", str(tmp_path), env=env):
            httpx.post(proxy.url + "/api/generate", json={"model": MODEL, "prompt": "over otlp", "options": {"num_predict": 3}}, timeout=30)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not ({"hw.gpu.utilization", "system.memory.usage"} & sink.metric_names("hw-collector") and len(sink.spans()) >= 5):
                time.sleep(0.2)
        spans = {span.name: (resource, span) for resource, span in sink.spans()}
        assert {"POST /api/generate", f"text_completion {MODEL}", "ollama.eval"} <= set(spans)
        resource, genai = spans[f"text_completion {MODEL}"]
        assert resource["service.name"] == "otel-proxy"
        attributes = {a.key: a.value for a in genai.attributes}
        assert attributes["gen_ai.usage.output_tokens"].int_value == 3
        assert attributes["gen_ai.request.model"].string_value == MODEL
        assert {"http.server.request.duration", "ollama.generated_tokens", "gen_ai.server.time_to_first_token"} <= sink.metric_names("otel-proxy")
        assert {"system.memory.usage", "system.cpu.utilization", "ollama.loaded_model.vram"} <= sink.metric_names("hw-collector")
