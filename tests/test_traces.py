"""Spans, read from an in-memory exporter on a proxy served in this process over a real socket."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otel_proxy import ProxySettings, create_app
from telemetry import setup_telemetry
from tests.harness import Server, free_port


class InProcessProxy:
    def __init__(self, upstream: str, capture_content: bool = False) -> None:
        self.exporter = InMemorySpanExporter()
        port = free_port()
        settings = ProxySettings(port=port, upstream=upstream, capture_content=capture_content)
        telemetry = setup_telemetry("otel-proxy", "test", environ={}, extra_span_processors=[SimpleSpanProcessor(self.exporter)])
        config = uvicorn.Config(create_app(settings, telemetry), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "InProcessProxy":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "in-process proxy did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def spans_of_trace(self, trace_id: int, at_least: int, timeout: float = 5.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            spans = [s for s in self.exporter.get_finished_spans() if s.context.trace_id == trace_id]
            if len(spans) >= at_least or time.monotonic() > deadline:
                return spans
            time.sleep(0.02)


@pytest.fixture
def traced(fake: Server) -> Iterator[InProcessProxy]:
    with InProcessProxy(fake.url) as proxy:
        yield proxy


CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


def test_a_streaming_generation_makes_server_genai_httpx_and_phase_spans(fake, traced):
    secret = "platypus-secret-prompt"
    with httpx.stream(
        "POST", traced.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": secret, "options": {"num_predict": 5}},
        headers={"traceparent": TRACEPARENT},
    ) as answer:
        body = b"".join(answer.iter_raw())
    spans = traced.spans_of_trace(int(CLIENT_TRACE, 16), at_least=6)
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {"POST /api/generate", "text_completion llama3.2:1b", "POST", "ollama.load", "ollama.prompt_eval", "ollama.eval"}

    server, genai, client = by_name["POST /api/generate"], by_name["text_completion llama3.2:1b"], by_name["POST"]
    assert server.kind == SpanKind.SERVER and server.parent.span_id == 0x00F067AA0BA902B7  # the client's span
    assert server.attributes["http.route"] == "/api/generate" and server.attributes["http.response.status_code"] == 200
    assert genai.parent.span_id == server.context.span_id
    assert client.kind == SpanKind.CLIENT and client.parent.span_id == genai.context.span_id
    assert genai.attributes["gen_ai.operation.name"] == "text_completion"
    assert genai.attributes["gen_ai.provider.name"] == "ollama"
    assert genai.attributes["gen_ai.usage.output_tokens"] == 5
    assert genai.attributes["gen_ai.usage.input_tokens"] == 1
    assert tuple(genai.attributes["gen_ai.response.finish_reasons"]) == ("length",)
    assert 0 < genai.attributes["gen_ai.response.time_to_first_chunk"] < (genai.end_time - genai.start_time) / 1e9
    final = httpx.Response(200, content=body.splitlines()[-1]).json()
    phases = [by_name["ollama.load"], by_name["ollama.prompt_eval"], by_name["ollama.eval"]]
    for phase, field in zip(phases, ("load_duration", "prompt_eval_duration", "eval_duration")):
        assert phase.parent.span_id == genai.context.span_id
        assert phase.end_time - phase.start_time == final[field]
    assert phases[0].end_time == phases[1].start_time and phases[1].end_time == phases[2].start_time
    assert genai.start_time <= phases[0].start_time and phases[2].end_time <= genai.end_time
    # No prompt text anywhere unless the user opts in.
    assert all(secret not in str(dict(span.attributes)) for span in spans)


def test_traceparent_reaches_ollama_with_the_proxy_span_as_parent(fake, traced):
    echoed = httpx.get(traced.url + "/fake/echo", headers={"traceparent": TRACEPARENT}).json()
    forwarded = dict((name.lower(), value) for name, value in echoed["headers"])
    assert forwarded["traceparent"].split("-")[1] == CLIENT_TRACE
    assert forwarded["traceparent"] != TRACEPARENT  # a child: the proxy's own client span
    client_span = next(s for s in traced.spans_of_trace(int(CLIENT_TRACE, 16), at_least=2) if s.kind == SpanKind.CLIENT)
    assert forwarded["traceparent"].split("-")[2] == format(client_span.context.span_id, "016x")


def test_one_span_per_request_not_per_chunk(fake, traced):
    with httpx.stream("POST", traced.url + "/api/chat", json={"model": "llama3.2:1b", "messages": [], "options": {"num_predict": 40}}) as answer:
        for _ in answer.iter_raw():
            pass
    time.sleep(0.2)
    names = [span.name for span in traced.exporter.get_finished_spans()]
    assert len(names) == 6, names


def test_message_content_is_recorded_only_when_opted_in(fake):
    with InProcessProxy(fake.url, capture_content=True) as proxy:
        httpx.post(proxy.url + "/api/chat", json={"model": "llama3.2:1b", "messages": [{"role": "user", "content": "opt-in text"}], "stream": False})
        time.sleep(0.2)
        genai = next(s for s in proxy.exporter.get_finished_spans() if s.name.startswith("chat "))
        assert "opt-in text" in genai.attributes["gen_ai.input.messages"]
