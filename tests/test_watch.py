"""The stream watchers (otel_proxy/watch.py) and Ollama's reports (otel_proxy/ollama.py), in-process, against the
fake's own account of each request: the tokens it counted and the durations it wrote.

Each case is one request to the fake Ollama's app (no sockets), its answer's bytes fed to the watcher the
proxy picks for it in pieces of 1, 7 and 4096 bytes (chunk boundaries must not change the report), and the
report compared with the fake's stats and, for Ollama's own APIs, with its final line read by the json module.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from otel_proxy.ollama import read_request, route_of
from otel_proxy.watch import Seam, Tail, watcher_for, TAIL_BYTES
from tests.fake_ollama import create_app
from tests.test_client_libraries import TOOL_FUNCTION, TOOLS_ANTHROPIC, TOOLS_OPENAI

MODEL = "llama3.2:1b"
USER = [{"role": "user", "content": "why is the sky blue"}]
# name: (path, body, finish reason, input tokens known, output tokens known)
CASES = {
    "generate stream": ("/api/generate", {"model": MODEL, "prompt": "why", "options": {"num_predict": 5}}, "length", True, True),
    "generate whole": ("/api/generate", {"model": MODEL, "prompt": "why", "stream": False}, "stop", True, True),
    "chat stream": ("/api/chat", {"model": MODEL, "messages": USER}, "stop", True, True),
    "chat whole thinking": ("/api/chat", {"model": MODEL, "messages": USER, "stream": False, "think": True}, "stop", True, True),
    "chat tools": ("/api/chat", {"model": MODEL, "messages": USER, "stream": False, "tools": [TOOL_FUNCTION]}, "stop", True, True),
    "openai chat stream usage": ("/v1/chat/completions", {"model": MODEL, "messages": USER, "stream": True, "stream_options": {"include_usage": True}}, "stop", True, True),
    "openai chat stream": ("/v1/chat/completions", {"model": MODEL, "messages": USER, "stream": True, "max_tokens": 6}, "length", False, True),
    "openai chat whole": ("/v1/chat/completions", {"model": MODEL, "messages": USER}, "stop", True, True),
    "openai chat tools stream": ("/v1/chat/completions", {"model": MODEL, "messages": USER, "stream": True, "tools": [TOOL_FUNCTION]}, "tool_calls", False, False),
    "openai completions stream usage": ("/v1/completions", {"model": MODEL, "prompt": "why", "stream": True, "stream_options": {"include_usage": True}}, "stop", True, True),
    "openai completions whole": ("/v1/completions", {"model": MODEL, "prompt": "why", "max_tokens": 3}, "length", True, True),
    "responses stream": ("/v1/responses", {"model": MODEL, "input": "why", "stream": True}, "completed", True, True),
    "responses whole tools": ("/v1/responses", {"model": MODEL, "input": "why", "tools": TOOLS_OPENAI}, "completed", True, True),
    "messages stream": ("/v1/messages", {"model": MODEL, "max_tokens": 256, "messages": USER, "stream": True}, "end_turn", True, True),
    "messages whole tools": ("/v1/messages", {"model": MODEL, "max_tokens": 256, "messages": USER, "tools": TOOLS_ANTHROPIC}, "tool_use", True, True),
    # answers longer than the tail (TAIL_BYTES): the report is found in the last bytes, cut mid-event
    "chat stream long": ("/api/chat", {"model": MODEL, "messages": USER, "options": {"num_predict": 900}}, "length", True, True),
    "openai chat stream usage long": ("/v1/chat/completions", {"model": MODEL, "messages": USER, "stream": True, "max_tokens": 900, "stream_options": {"include_usage": True}}, "length", True, True),
    "embed": ("/api/embed", {"model": MODEL, "input": "why"}, None, True, False),
    "openai embeddings": ("/v1/embeddings", {"model": MODEL, "input": "why"}, None, True, False),
}


async def ask(path: str, body: dict) -> tuple[httpx.Response, int, int]:
    """The fake's answer, and the output and input tokens it counted for it."""
    app = create_app(token_delay=0, load_delay=0)
    stats = app.state.fake.stats
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as client:
        answer = await client.post(path, json=body)
    return answer, stats.generated_tokens, stats.prompt_tokens


@pytest.mark.parametrize("name", CASES)
def test_the_report_is_the_fakes_account_whatever_the_chunk_boundaries(name):
    path, body, finish, input_known, output_known = CASES[name]
    answer, generated, prompted = asyncio.run(ask(path, body))
    assert answer.status_code == 200, answer.text
    route = route_of(path)
    reports = []
    for size in (1, 7, 4096):
        watcher = watcher_for(route, answer.headers["content-type"])
        for start in range(0, len(answer.content), size):
            watcher.feed(answer.content[start:start + size])
        reports.append(watcher.report())
    assert reports[0] == reports[1] == reports[2], reports
    assert ("long" in name) == (len(answer.content) > 2 * TAIL_BYTES), len(answer.content)
    report = reports[0]
    assert report.error is None and report.finish_reason == finish, report
    assert report.input_tokens == (prompted if input_known else None), (report, prompted)
    assert report.output_tokens == (generated if output_known else None), (report, generated)
    assert report.output_counted_from_chunks == (name == "openai chat stream")
    assert report.tool_calls == ("tools" in name) and report.reasoning == ("thinking" in name)
    assert report.response_model in (MODEL, None)
    if path.startswith("/api/") and path != "/api/embed":
        final = json.loads(answer.content.splitlines()[-1])
        assert (report.load_s, report.prompt_eval_s, report.eval_s, report.total_s) == (
            final["load_duration"] / 1e9, final["prompt_eval_duration"] / 1e9, final["eval_duration"] / 1e9, final["total_duration"] / 1e9)
    facts = read_request(route, json.dumps(body).encode(), True)
    assert facts.model == MODEL and facts.stream == (body.get("stream", path in ("/api/generate", "/api/chat")) is True)


def test_an_error_inside_a_stream_and_a_cut_stream_are_reported():
    watcher = watcher_for("/api/generate", "application/x-ndjson")
    watcher.feed(b'{"model":"m","response":"a","done":false}\n{"error":"model runner has unexpectedly stopped"}\n')
    assert watcher.report().error == "model runner has unexpectedly stopped"
    cut = watcher_for("/v1/chat/completions", "text/event-stream")
    cut.feed(b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n')
    report = cut.report()
    assert report.finish_reason is None and report.input_tokens is None


def test_a_marker_is_counted_once_however_the_stream_is_cut():
    """Seam against bytes.count on the whole stream, over many random cuts (markers of two lengths, so one can
    lie wholly inside what is kept of the previous chunk)."""
    import random

    long, short = b'"finish_reason":null', b'"ab"'
    stream = (b'data: {"choices":[{"delta":{"content":"x"},"finish_reason":null}]}\n\n"ab"' * 40)
    rng = random.Random(7)
    for _ in range(300):
        seam, counted, seen_short = Seam(b"\n\n", long, short), {long: 0, short: 0}, False
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 200)))
        for start, end in zip([0, *cuts], [*cuts, len(stream)]):
            chunk = stream[start:end]
            for marker in (long, short):
                counted[marker] += seam.count(chunk, marker)
            seen_short = seen_short or seam.seen(chunk, short)
            seam.passed(chunk)
        assert counted == {long: stream.count(long), short: stream.count(short)} and seen_short


def test_the_tail_keeps_at_least_its_bytes_and_no_more_than_it_needs():
    tail = Tail()
    for index in range(5000):
        tail.add(b"%05d" % index)
    kept = tail.bytes()
    assert kept.endswith(b"04999") and TAIL_BYTES <= len(kept) < TAIL_BYTES + 5
    assert (b"".join(b"%05d" % i for i in range(5000))).endswith(kept)
