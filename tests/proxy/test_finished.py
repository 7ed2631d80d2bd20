"""otel_proxy/finished.py: every number derived from a finished request, once, and the three readers of it.

In process: the derivations on values set exactly; then a proxy served in this process, a request on every API
(streamed and not), where /-/requests, the GenAI and phase spans and the fake's truth must all say the same.
"""

from __future__ import annotations

import dataclasses
import itertools

import httpx
import pytest

from otel_proxy.continuations import Continuation
from otel_proxy.finished import FinishedRequest, Observed, finish, generation
from otel_proxy.ollama import Report, RequestFacts
from otel_proxy.scheduling import Decomposition
from tests.support.harness import Server, configure_fake
from tests.support.in_process import InProcessProxy

# The schema of /-/requests: these keys, in this order (docs/metrics.md lists them). The first 40 were its keys
# before the finished request was one value; response_model and waited_behind_s came with it, session and first_output
# with the agents' turns, the prompt cache's six (prompt_cached_tokens to history_changed_at) with the cache, prompt_cut
# with Ollama's log.
SCHEMA = (
    "start_time", "trace_id", "trace_sampled", "method", "client", "session", "route", "operation", "model", "requested_model", "response_model",
    "stream", "status", "duration_s", "time_to_first_token_s", "first_output", "input_tokens", "output_tokens", "tokens_per_second",
    "prompt_cached_tokens", "prompt_tokens_per_second", "turn", "cache_miss", "read_again_tokens", "history_changed_at", "load_duration_s",
    "queue_wait_s", "pending_wait_s", "waited_behind", "waited_behind_s", "drain_s", "load_s", "unknown_s", "load_reason", "reload_cause",
    "slot_wait_s", "prompt_eval_s", "eval_s", "ollama_total_s", "ollama_other_s", "proxy_s", "proxy_added_s", "context_length", "context_fill", "prompt_cut",
    "error_type", "error", "finish_reason", "reasoning", "tool_calls", "cloud",
)


def observed(**changes: object) -> Observed:
    seen = Observed(started=100.0, started_ns=1_700_000_000_000_000_000, ended=102.0, trace_id=7, trace_sampled=True, method="POST",
                    route="/v1/chat/completions", operation="chat", facts=RequestFacts("llama3.2", True), status=200, error_type=None,
                    error_message=None, first_output_at=100.5, streamed=True, client="openai-python", session=None, model="llama3.2:latest",
                    model_label="llama3.2:latest", context_length=4096)
    return dataclasses.replace(seen, **changes)


def test_one_rate_from_ollamas_timing_where_it_gave_one_else_from_the_stream():
    # Ollama timed it: eval_count over eval_duration, whatever the stream did
    timed = finish(observed(route="/api/chat"), Report(input_tokens=10, output_tokens=8, eval_s=0.4), Decomposition())
    assert timed.tokens_per_second == 20.0 and timed.time_per_output_token_s == 0.05
    # streamed without durations: the 7 tokens after the first, over the 1.5 s from the first output to the end
    streamed = finish(observed(), Report(output_tokens=8), Decomposition())
    assert streamed.tokens_per_second == pytest.approx(7 / 1.5) and streamed.time_per_output_token_s == pytest.approx(1.5 / 7)
    assert generation(Report(output_tokens=8), observed()) == (7, pytest.approx(1.5))
    # nothing to divide: one token, one piece, no count, or no time between the first output and the end
    # an answer that opened with a tool call: generated whole before its first byte, no rate (on /api/chat, Ollama's is kept)
    tool_first = Report(output_tokens=8, first_output="tool_call")
    assert finish(observed(), tool_first, Decomposition()).tokens_per_second is None
    assert finish(observed(), dataclasses.replace(tool_first, eval_s=0.4), Decomposition()).tokens_per_second == 20.0
    assert finish(observed(), dataclasses.replace(tool_first, first_output="text"), Decomposition()).tokens_per_second == pytest.approx(7 / 1.5)
    # whether it streamed is the answer's (a body whose "stream" the proxy could not read says nothing)
    assert finish(observed(facts=RequestFacts("m", False)), Report(output_tokens=8), Decomposition()).stream is True
    for seen, report in ((observed(), Report(output_tokens=1)), (observed(streamed=False), Report(output_tokens=8)),
                         (observed(), Report()), (observed(first_output_at=102.0), Report(output_tokens=8)),
                         (observed(operation="embeddings"), Report(output_tokens=8))):
        done = finish(seen, report, Decomposition())
        assert done.tokens_per_second is None and done.time_per_output_token_s is None, (seen, report)


def test_the_parts_of_a_request_add_up_to_its_duration_and_the_labels_follow_the_bounds():
    parts = Decomposition(pending_s=0.3, drain_s=0.1, load_s=0.4, slot_s=0.05, load_reason="reload", reload_cause="num_ctx 4096 -> 8192",
                          behind=(("a:1b", 0.1), ("b:7b", 0.15), ("a:1b", 0.05)))
    report = Report(input_tokens=1000, output_tokens=24, load_s=0.8, prompt_eval_s=0.2, eval_s=0.5, total_s=1.9)
    done = finish(observed(route="/api/chat", first_output_at=101.3), report, parts)
    named = done.pending_wait_s + done.drain_s + done.load_s + done.slot_wait_s + done.prompt_eval_s + done.eval_s
    assert done.ollama_other_s == pytest.approx(1.9 - named) and done.proxy_s == pytest.approx(2.0 - 1.9)
    assert named + done.ollama_other_s + done.proxy_s == pytest.approx(done.duration_s) == 2.0
    assert done.queue_wait_s == pytest.approx(0.45) and done.waited_behind == ("a:1b", "b:7b", "a:1b")
    assert done.waited_behind_s == {"a:1b": pytest.approx(0.15), "b:7b": 0.15}
    assert done.context_fill == (1000 + 24) / 4096 and done.time_to_first_token_s == pytest.approx(1.3)
    assert (done.model, done.model_label, done.response_model) == ("llama3.2:latest", "llama3.2:latest", "llama3.2:latest")
    past_the_bound = finish(observed(model_label="other"), report, parts)
    assert (past_the_bound.model, past_the_bound.model_label, past_the_bound.response_model) == ("other", "other", "llama3.2:latest")
    nameless = finish(observed(model=None, model_label="unknown", facts=RequestFacts(None, True)), Report(), Decomposition())
    assert (nameless.model, nameless.model_label) == (None, "unknown")
    cloud = finish(observed(facts=RequestFacts("gpt-oss:120b-cloud", True)), Report(response_model="gpt-oss:120b"), Decomposition())
    assert cloud.cloud and cloud.response_model == "gpt-oss:120b"
    refused = finish(observed(status=404, error_type=None), Report(error="model 'x' not found"), Decomposition())
    assert refused.time_to_first_token_s is None and refused.error == "model 'x' not found"
    assert [field.name for field in dataclasses.fields(FinishedRequest)] == list(SCHEMA)
    assert list(done.as_json()) == list(SCHEMA) and done.as_json()["waited_behind_s"] == done.waited_behind_s


CHAT = [{"role": "user", "content": "one two three four"}]
ROUTES = {
    "/api/generate": {"prompt": "one two three four"},
    "/api/chat": {"messages": CHAT},
    "/v1/chat/completions": {"messages": CHAT, "stream_options": {"include_usage": True}},
    "/v1/completions": {"prompt": "one two three four", "stream_options": {"include_usage": True}},
    "/v1/responses": {"input": "one two three four"},
    "/v1/messages": {"messages": CHAT, "max_tokens": 64},
}


@pytest.fixture(scope="module")
def served(fake: Server):
    configure_fake(fake, token_delay=0.01, answer_delay=0)
    with InProcessProxy(fake.url) as proxy:
        yield proxy


@pytest.mark.parametrize(("route", "stream"), list(itertools.product(ROUTES, (True, False))))
def test_requests_log_spans_and_truth_say_the_same_on_every_api(fake: Server, served: InProcessProxy, route: str, stream: bool):
    configure_fake(fake, reset_stats=True)
    trace_id = 0x5A00_0000_0000_0000_0000_0000_0000_0000 + hash((route, stream)) % 2**64
    body = {"model": "llama3.2:1b", "stream": stream, **ROUTES[route]}
    answer = httpx.post(served.url + route, json=body, headers={"traceparent": f"00-{trace_id:032x}-00f067aa0ba902b7-01"}, timeout=30)
    assert answer.status_code == 200, answer.text
    spans = served.spans_of_trace(trace_id, at_least=3)
    entry = next(e for e in httpx.get(served.url + "/-/requests").json()["requests"] if e["trace_id"] == f"{trace_id:032x}")
    truth = httpx.get(fake.url + "/fake/stats").json()["by_route"][route]
    assert list(entry) == list(SCHEMA)
    assert (entry["route"], entry["stream"], entry["status"], entry["model"], entry["requested_model"]) == (route, stream, 200, "llama3.2:1b", "llama3.2:1b")
    assert (entry["input_tokens"], entry["output_tokens"]) == (truth["prompt_tokens"], truth["generated_tokens"])
    assert (entry["time_to_first_token_s"] is not None) is stream
    timed = route.startswith("/api/")
    assert (entry["eval_s"] is not None, entry["ollama_total_s"] is not None) == (timed, timed)
    if timed:
        assert entry["tokens_per_second"] == pytest.approx(entry["output_tokens"] / entry["eval_s"])
    else:
        assert (entry["tokens_per_second"] is not None) is stream  # streamed: from the stream; whole: no time to divide by
    genai = next(span for span in spans if span.name == "chat llama3.2:1b" or span.name == "text_completion llama3.2:1b")
    attributes = genai.attributes
    assert attributes["gen_ai.usage.input_tokens"] == entry["input_tokens"] and attributes["gen_ai.usage.output_tokens"] == entry["output_tokens"]
    assert attributes["gen_ai.response.model"] == entry["response_model"] == "llama3.2:1b"
    assert attributes.get("gen_ai.response.time_to_first_chunk") == entry["time_to_first_token_s"]
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == (entry["finish_reason"],)
    assert (genai.end_time - genai.start_time) / 1e9 == pytest.approx(entry["duration_s"], abs=1e-6)
    phases = {span.name: (span.end_time - span.start_time) / 1e9 for span in spans if span.name.startswith("ollama.")}
    expected = {name: entry[key] for name, key in (("ollama.prompt_eval", "prompt_eval_s"), ("ollama.eval", "eval_s"), ("ollama.slot_wait", "slot_wait_s"),
                                                    ("ollama.queue", "pending_wait_s"), ("ollama.load", "load_s")) if entry[key]}
    assert phases == pytest.approx(expected, abs=1e-6)


def test_every_field_of_one_finished_request():
    """One request whole, field by field: what each is made of, where the tests above check the rules."""
    parts = Decomposition(pending_s=0.2, load_s=0.3, slot_s=0.1, load_reason="cold", behind=(("b:7b", 0.2),))
    report = Report(input_tokens=2000, cached_input_tokens=1500, output_tokens=9, eval_s=0.3, prompt_eval_s=0.25, load_s=0.5, total_s=1.5,
                    finish_reason="stop", first_output="text", response_model="ignored", reasoning=True, tool_calls=False)
    seen = observed(route="/api/chat", facts=RequestFacts("llama3.2", False), session="5e55", status=200, error_type="invalid_response",
                    error_message="the stream ended early", first_output_at=100.75, added_s=0.00042)
    done = finish(seen, report, parts, Continuation(4, "history_changed", 1200, 7))
    assert done.as_json() == {
        "start_time": "2023-11-14T22:13:20+00:00", "trace_id": f"{7:032x}", "trace_sampled": True, "method": "POST", "client": "openai-python",
        "session": "5e55", "route": "/api/chat", "operation": "chat", "model": "llama3.2:latest", "requested_model": "llama3.2",
        "response_model": "llama3.2:latest", "stream": True, "status": 200, "duration_s": 2.0, "time_to_first_token_s": 0.75, "first_output": "text",
        "input_tokens": 2000, "output_tokens": 9, "tokens_per_second": 30.0, "prompt_cached_tokens": 1500, "prompt_tokens_per_second": 2000.0,
        "turn": 4, "cache_miss": "history_changed", "read_again_tokens": 1200, "history_changed_at": 7, "load_duration_s": 0.5,
        "queue_wait_s": pytest.approx(0.3), "pending_wait_s": 0.2, "waited_behind": ("b:7b",), "waited_behind_s": {"b:7b": 0.2}, "drain_s": None,
        "load_s": 0.3, "unknown_s": None, "load_reason": "cold", "reload_cause": None, "slot_wait_s": 0.1, "prompt_eval_s": 0.25, "eval_s": 0.3,
        "ollama_total_s": 1.5, "ollama_other_s": pytest.approx(1.5 - 0.2 - 0.3 - 0.1 - 0.25 - 0.3), "proxy_s": pytest.approx(0.5), "proxy_added_s": 0.00042,
        "context_length": 4096, "context_fill": 2009 / 4096, "prompt_cut": False, "error_type": "invalid_response", "error": "the stream ended early",
        "finish_reason": "stop", "reasoning": True, "tool_calls": False, "cloud": False,
    }
    # not a stream that answered: no time to a first output, and its stream flag the body's
    failed = finish(observed(status=None, facts=RequestFacts("llama3.2", False)), report, parts)
    assert (failed.time_to_first_token_s, failed.first_output, failed.stream) == (None, None, False)
    assert finish(seen, report, parts).turn is None and finish(seen, dataclasses.replace(report, cached_input_tokens=None), parts).prompt_tokens_per_second is None
    # a prompt cut to fit: its length is the cut's, or it fills 95 % of the context
    cut = finish(seen, dataclasses.replace(report, input_tokens=4096 - (4096 - 4) // 2, output_tokens=4), parts)
    assert cut.prompt_cut and cut.context_full and cut.context_fill < 0.6
    assert finish(dataclasses.replace(seen, context_length=None), report, parts).prompt_cut is None  # the context not known
    assert dataclasses.replace(done, context_fill=0.95).context_full and not done.context_full
