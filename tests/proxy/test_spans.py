"""Spans, read from an in-memory exporter on a proxy served in this process over a real socket."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.trace import SpanKind

from tests.support.harness import Server, configure_fake, free_port
from tests.support.in_process import InProcessProxy


@pytest.fixture
def traced(fake: Server) -> Iterator[InProcessProxy]:
    with InProcessProxy(fake.url) as proxy:
        yield proxy


CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


def test_a_streaming_generation_makes_server_genai_httpx_and_phase_spans(fake, traced):
    secret = "platypus-secret-prompt"
    configure_fake(fake, unload=True)  # a cold load, whatever ran before
    traced.read_ps_again()  # the proxy knows that nothing is resident
    with httpx.stream(
        "POST", traced.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": secret, "options": {"num_predict": 5}},
        headers={"traceparent": TRACEPARENT},
    ) as answer:
        body = b"".join(answer.iter_raw())
    spans = traced.spans_of_trace(int(CLIENT_TRACE, 16), at_least=6)
    by_name = {span.name: span for span in spans}
    # load_duration is ollama.queue (the pending queue), ollama.drain and ollama.load, whichever took time.
    waiting = [name for name in ("ollama.queue", "ollama.drain", "ollama.load") if name in by_name]
    assert waiting == ["ollama.load"] and by_name["ollama.load"].attributes["ollama.load.reason"] == "cold"
    assert set(by_name) == {"POST /api/generate", "text_completion llama3.2:1b", "POST", *waiting, "ollama.prompt_eval", "ollama.eval"}

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
    head = [by_name[name] for name in waiting]
    phases = [*head, by_name["ollama.prompt_eval"], by_name["ollama.eval"]]
    assert sum(span.end_time - span.start_time for span in head) == pytest.approx(final["load_duration"], abs=len(head))
    for phase, field in zip(phases[len(head):], ("prompt_eval_duration", "eval_duration")):
        assert phase.end_time - phase.start_time == final[field]
    for phase in phases:
        assert phase.parent.span_id == genai.context.span_id
    assert all(before.end_time == after.start_time for before, after in zip(phases, phases[1:]))  # back to back, as Ollama runs them
    assert genai.start_time <= phases[0].start_time and phases[-1].end_time <= genai.end_time
    # No prompt text anywhere unless the user opts in.
    assert all(secret not in str(dict(span.attributes)) for span in spans)


@pytest.mark.parametrize(
    ("route", "body", "finish", "reasoning", "tool_calls"),
    [
        ("/v1/messages", {"model": "llama3.2:1b-cloud", "max_tokens": 64, "stream": True, "thinking": {"type": "enabled", "budget_tokens": 32},
                          "messages": [{"role": "user", "content": "What is the weather like in Paris?"}]}, "end_turn", True, False),
        ("/v1/responses", {"model": "llama3.2:1b", "input": "What is the weather like in Paris?", "stream": True,
                           "tools": [{"type": "function", "name": "get_weather", "parameters": {}}]}, "completed", False, True),
    ],
)
def test_the_responses_and_messages_apis_make_a_genai_span_with_usage_and_what_the_answer_carried(fake, traced, route, body, finish, reasoning, tool_calls):
    httpx.post(fake.url + "/fake/configure", json={"reset_stats": True})
    with httpx.stream("POST", traced.url + route, json=body, headers={"traceparent": TRACEPARENT}) as answer:
        b"".join(answer.iter_raw())
    truth = httpx.get(fake.url + "/fake/stats").json()["by_route"][route]
    spans = traced.spans_of_trace(int(CLIENT_TRACE, 16), at_least=3)
    (genai,) = [span for span in spans if span.name == f"chat {body['model']}"]
    assert genai.attributes["gen_ai.operation.name"] == "chat"
    assert genai.attributes["gen_ai.usage.output_tokens"] == truth["generated_tokens"] > 0  # one request since reset
    assert genai.attributes["gen_ai.usage.input_tokens"] == truth["prompt_tokens"]
    assert tuple(genai.attributes["gen_ai.response.finish_reasons"]) == (finish,)
    assert (genai.attributes["ollama.response.reasoning"], genai.attributes["ollama.response.tool_calls"]) == (reasoning, tool_calls)
    assert genai.attributes["ollama.model.cloud"] is body["model"].endswith("-cloud")
    assert not [span for span in spans if span.name.startswith("ollama.")]  # these APIs report no phases: none invented


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
    assert len(names) == 5, names  # server, GenAI, httpx client, prompt_eval, eval: a warm hand-over (no load, no wait) has no span


def test_message_content_is_recorded_only_when_opted_in(fake):
    with InProcessProxy(fake.url, capture_content=True) as proxy:
        httpx.post(proxy.url + "/api/chat", json={"model": "llama3.2:1b", "messages": [{"role": "user", "content": "opt-in text"}], "stream": False})
        time.sleep(0.2)
        genai = next(s for s in proxy.exporter.get_finished_spans() if s.name.startswith("chat "))
        assert "opt-in text" in genai.attributes["gen_ai.input.messages"]


def _client_span_calls(proxy: InProcessProxy) -> list[tuple[dict, object]]:
    """Three calls through ``proxy`` (a stream, Ollama's 404, Ollama unreachable): what Ollama
    was sent, and each call's CLIENT span with its parent."""
    trace_ids = [0x4BF92F3577B34DA6A3CE929D0E0E4700 + n for n in range(3)]
    headers = [{"traceparent": f"00-{trace_id:032x}-00f067aa0ba902b7-01"} for trace_id in trace_ids]
    with httpx.stream("POST", proxy.url + "/api/generate", json={"model": "llama3.2:1b", "prompt": "x", "options": {"num_predict": 3}}, headers=headers[0]) as answer:
        assert answer.status_code == 200 and b"".join(answer.iter_raw())
    assert httpx.post(proxy.url + "/api/chat", json={"model": "no-such-model", "messages": []}, headers=headers[1]).status_code == 404
    calls = []
    for trace_id in trace_ids[:2]:
        spans = proxy.spans_of_trace(trace_id, at_least=3)
        client = next(span for span in spans if span.kind == SpanKind.CLIENT)
        parent = next(span for span in spans if span.context.span_id == client.parent.span_id)
        calls.append((client, parent.name))
    echoed = httpx.get(proxy.url + "/fake/echo", headers=headers[2]).json()
    forwarded = dict((name.lower(), value) for name, value in echoed["headers"])
    client = next(span for span in proxy.spans_of_trace(trace_ids[2], at_least=2) if span.kind == SpanKind.CLIENT)
    assert forwarded["traceparent"] == f"00-{trace_ids[2]:032x}-{client.context.span_id:016x}-01"
    return calls


@pytest.mark.parametrize("semconv", ["", "http/dup"])
def test_the_proxy_makes_the_client_span_the_instrumentation_makes(fake, monkeypatch, semconv):
    """The proxy's client span (the default) is span for span what opentelemetry-instrumentation-httpx records,
    for a stream, Ollama's 404 and a refused connection, in the old and the new HTTP conventions."""
    from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", semconv)
    monkeypatch.setattr(_OpenTelemetrySemanticConventionStability, "_initialized", False)
    closed = f"http://127.0.0.1:{free_port()}"
    made: dict[str, list] = {}
    for who in ("httpx", "proxy"):
        with InProcessProxy(fake.url, client_spans=who) as proxy:
            calls = _client_span_calls(proxy)
        with InProcessProxy(closed, client_spans=who) as proxy:
            assert httpx.post(proxy.url + "/api/generate", json={"model": "m"}, headers={"traceparent": TRACEPARENT}).status_code == 502
            client = next(span for span in proxy.spans_of_trace(int(CLIENT_TRACE, 16), at_least=2) if span.kind == SpanKind.CLIENT)
            calls.append((client, next(s.name for s in proxy.exporter.get_finished_spans() if s.context.span_id == client.parent.span_id)))
        made[who] = calls
    assert made["httpx"][0][0].instrumentation_scope.name == "opentelemetry.instrumentation.httpx"
    assert made["proxy"][0][0].instrumentation_scope.name == "otel_proxy"
    assert [parent for _, parent in made["proxy"]] == ["text_completion llama3.2:1b", "chat no-such-model", "text_completion m"]
    for (theirs, their_parent), (ours, our_parent) in zip(made["httpx"], made["proxy"]):
        assert (ours.name, ours.kind, our_parent) == (theirs.name, theirs.kind, their_parent)
        assert dict(ours.attributes) == dict(theirs.attributes)
        assert (ours.status.status_code, ours.status.description) == (theirs.status.status_code, theirs.status.description)
        assert [event.name for event in ours.events] == [event.name for event in theirs.events]
        for our_event, their_event in zip(ours.events, theirs.events):
            assert set(our_event.attributes) == set(their_event.attributes)
            for key in ("exception.type", "exception.message", "exception.escaped"):
                assert our_event.attributes[key] == their_event.attributes[key]
        assert ours.start_time <= ours.end_time
    statuses = [ours.status.status_code.name for ours, _ in made["proxy"]]
    assert statuses == ["UNSET", "ERROR", "ERROR"]  # 200; Ollama's 404; the refused connection
    assert made["proxy"][2][0].events[0].attributes["exception.type"] == "httpx.ConnectError"
    if semconv:
        assert made["proxy"][1][0].attributes["error.type"] == "404"
        assert made["proxy"][2][0].attributes["error.type"] == "ConnectError"
