"""The stream watchers (otel_proxy/watch.py) and Ollama's reports (otel_proxy/ollama.py), in-process, against the
fake's own account of each request: the tokens it counted and the durations it wrote.

Each case is one request to the fake Ollama's app (no sockets), its answer's bytes fed to the watcher the
proxy picks for it in pieces of 1, 7 and 4096 bytes (chunk boundaries must not change the report), and the
report compared with the fake's stats and, for Ollama's own APIs, with its final line read by the json module.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from otel_proxy.finished import prompt_rate
from otel_proxy.ollama import cached_tokens, read_request, route_of
from ollama_otel_stack.ollama_versions import reports_cache
from otel_proxy.watch import MessagesWatcher, ResponsesWatcher, Seam, Tail, watcher_for, TAIL_BYTES
from tests.fake.ollama import create_app
from tests.support.payloads import TOOL_FUNCTION, TOOLS_ANTHROPIC, TOOLS_OPENAI

MODEL = "llama3.2:1b"
USER = [{"role": "user", "content": "why is the sky blue"}]
# name: (path, body, finish reason, input tokens known, output tokens known)
CASES = {
    "generate stream": ("/api/generate", {"model": MODEL, "prompt": "why", "options": {"num_predict": 5}}, "length", True, True),
    "generate whole": ("/api/generate", {"model": MODEL, "prompt": "why", "stream": False}, "stop", True, True),
    "chat stream": ("/api/chat", {"model": MODEL, "messages": USER}, "stop", True, True),
    "chat whole thinking": ("/api/chat", {"model": MODEL, "messages": USER, "stream": False, "think": True}, "stop", True, True),
    "chat tools": ("/api/chat", {"model": MODEL, "messages": USER, "stream": False, "tools": [TOOL_FUNCTION]}, "stop", True, True),
    "chat stream thinking": ("/api/chat", {"model": MODEL, "messages": USER, "think": True}, "stop", True, True),
    "chat stream tools": ("/api/chat", {"model": MODEL, "messages": USER, "tools": [TOOL_FUNCTION]}, "stop", True, True),
    "generate stream thinking": ("/api/generate", {"model": MODEL, "prompt": "why", "think": True}, "stop", True, True),
    "chat stream thinking tools": ("/api/chat", {"model": MODEL, "messages": USER, "think": True, "tools": [TOOL_FUNCTION]}, "stop", True, True),
    "openai chat stream usage thinking": ("/v1/chat/completions", {"model": MODEL, "messages": USER, "stream": True, "reasoning_effort": "low",
                                                                  "stream_options": {"include_usage": True}}, "stop", True, True),
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
    "responses stream long": ("/v1/responses", {"model": MODEL, "input": "why", "stream": True}, "completed", True, True),
    # its response.completed alone (the whole answer again) is larger than the tail: it must be caught as it begins
    "responses stream longest": ("/v1/responses", {"model": MODEL, "input": "why", "stream": True}, "completed", True, True),
    "responses whole long": ("/v1/responses", {"model": MODEL, "input": "why"}, "completed", True, True),
    "messages stream long": ("/v1/messages", {"model": MODEL, "max_tokens": 4096, "messages": USER, "stream": True}, "end_turn", True, True),
    "messages whole long": ("/v1/messages", {"model": MODEL, "max_tokens": 4096, "messages": USER}, "end_turn", True, True),
    "generate whole long": ("/api/generate", {"model": MODEL, "prompt": "why", "stream": False, "options": {"num_predict": 3000}}, "length", True, True),
    "responses stream thinking": ("/v1/responses", {"model": MODEL, "input": "why", "stream": True, "reasoning": {"effort": "low"}}, "completed", True, True),
    "responses stream tools": ("/v1/responses", {"model": MODEL, "input": "why", "stream": True, "tools": TOOLS_OPENAI}, "completed", True, True),
    "messages stream thinking": ("/v1/messages", {"model": MODEL, "max_tokens": 256, "messages": USER, "stream": True, "thinking": {"type": "enabled", "budget_tokens": 1024}}, "end_turn", True, True),
    "messages stream tools": ("/v1/messages", {"model": MODEL, "max_tokens": 256, "messages": USER, "stream": True, "tools": TOOLS_ANTHROPIC}, "tool_use", True, True),
    "messages stream cut short": ("/v1/messages", {"model": MODEL, "max_tokens": 3, "messages": USER, "stream": True}, "max_tokens", True, True),
    "embed": ("/api/embed", {"model": MODEL, "input": "why"}, None, True, False),
    "openai embeddings": ("/v1/embeddings", {"model": MODEL, "input": "why"}, None, True, False),
}


async def ask(path: str, body: dict, answer_tokens: int | None = None) -> tuple[httpx.Response, int, int]:
    """The fake's answer (one of answer_tokens where the request sets no limit), and the output and input
    tokens it counted for it."""
    app = create_app(token_delay=0, load_delay=0)
    if answer_tokens is not None:
        app.state.fake.answer_tokens = answer_tokens
    stats = app.state.fake.stats
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as client:
        answer = await client.post(path, json=body)
    return answer, stats.generated_tokens, stats.prompt_tokens


def pieces(content: bytes, size: int) -> list[bytes]:
    return [content[start:start + size] for start in range(0, len(content), size)]


def as_written(content: bytes) -> list[bytes]:
    """Ollama's own writes: a line at a time (/api), an event at a time (SSE), a body whole."""
    for separator in (b"\n\n", b"\n"):
        if content.count(separator) > 1:
            return [part + separator for part in content.split(separator)[:-1]]
    return [content]


# where the first output is marked (watch.py's first_output_at): the end of the first event carrying it
FIRST_OUTPUT = {"/v1/responses": b".delta\ndata:", "/v1/messages": b"event: content_block_delta\n"}


def first_output_in(watcher, route: str, chunks: list[bytes], fed: list[tuple[float, float]]) -> bool:
    """first_output_at was taken while the chunk that completed the first output marker was fed (None on the
    routes whose first chunk is the first output, and on whole bodies)."""
    content = b"".join(chunks)
    marker = FIRST_OUTPUT[route] if isinstance(watcher, (ResponsesWatcher, MessagesWatcher)) else None
    if marker is None:
        return watcher.first_output_at is None
    end = content.index(marker) + len(marker)
    offset = 0
    for (before, after), chunk in zip(fed, chunks):
        offset += len(chunk)
        if offset >= end:
            return before <= watcher.first_output_at <= after
    return False


@pytest.mark.parametrize("name", CASES)
def test_the_report_is_the_fakes_account_whatever_the_chunk_boundaries(name):
    path, body, finish, input_known, output_known = CASES[name]
    # a long answer: more than twice the tail, in events (~100 bytes a token) or in one body (~6 bytes a token)
    answer_tokens = None if "long" not in name else 3000 if "whole" in name or "longest" in name else 900
    answer, generated, prompted = asyncio.run(ask(path, body, answer_tokens))
    assert answer.status_code == 200, answer.text
    route = route_of(path)
    reports = []
    for chunks in (*(pieces(answer.content, size) for size in (1, 7, 4096)), as_written(answer.content)):
        watcher = watcher_for(route, answer.headers["content-type"])
        fed = []  # the clock before and after each chunk
        for chunk in chunks:
            before = time.perf_counter()
            watcher.feed(chunk)
            fed.append((before, time.perf_counter()))
        reports.append(watcher.report())
        assert first_output_in(watcher, route, chunks, fed), name
    assert reports[0] == reports[1] == reports[2] == reports[3], reports
    assert ("long" in name) == (len(answer.content) > 2 * TAIL_BYTES), len(answer.content)
    report = reports[0]
    assert report.error is None and report.finish_reason == finish, report
    assert report.input_tokens == (prompted if input_known else None), (report, prompted)
    assert report.output_tokens == (generated if output_known else None), (report, generated)
    assert report.output_counted_from_chunks == (name == "openai chat stream")
    assert report.tool_calls == ("tools" in name) and report.reasoning == ("thinking" in name)
    # what came first: reasoning before content, and the fake's tool answers are a call alone (a whole body and an
    # embedding have no first output)
    streamed = answer.headers["content-type"].startswith(("application/x-ndjson", "text/event-stream"))
    kind = "reasoning" if "thinking" in name else "tool_call" if "tools" in name else "text"
    assert report.first_output == (kind if streamed else None), report
    # the model each answer names, as read: a Messages stream names it only in message_start, before the tail
    assert report.response_model == (None if path == "/v1/messages" and body.get("stream") else MODEL), report
    if path.startswith("/api/") and path != "/api/embed":
        final = json.loads(answer.content.splitlines()[-1])
        assert (report.load_s, report.prompt_eval_s, report.eval_s, report.total_s) == (
            final["load_duration"] / 1e9, final["prompt_eval_duration"] / 1e9, final["eval_duration"] / 1e9, final["total_duration"] / 1e9)
    facts = read_request(route, json.dumps(body).encode(), True)
    assert facts.model == MODEL and facts.stream == (body.get("stream", path in ("/api/generate", "/api/chat")) is True)


async def ask_again(path: str, body: dict, version: str) -> tuple[httpx.Response, int, int | None]:
    """The same request twice to one fake speaking ``version``: the second answer, and the prompt tokens and cached
    tokens its truth log gives it (the runner held the first's prompt: all of it but the last token is cached)."""
    app = create_app(token_delay=0, load_delay=0, version=version)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as client:
        await client.post(path, json=body)
        answer = await client.post(path, json=body)
    truth = app.state.fake.scheduler.log[-1]
    return answer, truth.prompt_tokens, truth.cached_tokens


@pytest.mark.parametrize("version", ["0.32.15", "0.33.3"])
@pytest.mark.parametrize("name", [name for name in CASES if "long" not in name and "embed" not in name])
def test_the_cached_count_is_the_runners_on_every_api_and_absent_from_an_ollama_that_writes_none(name, version):
    path, body, _, input_known, _ = CASES[name]
    answer, prompted, cached = asyncio.run(ask_again(path, body, version))
    assert answer.status_code == 200 and cached == prompted - 1, (answer.text, prompted, cached)  # 0 for a one-token prompt: a count too
    route = route_of(path)
    watcher = watcher_for(route, answer.headers["content-type"])
    for chunk in pieces(answer.content, 7):
        watcher.feed(chunk)
    report = watcher.report()
    # the prompt's whole count on every API (/v1/messages' input_tokens leaves the cached ones out, as Anthropic's does)
    assert report.input_tokens == (prompted if input_known else None), report
    known = cached if input_known and reports_cache(version) else None
    assert cached_tokens(route, report, version) == known, report
    assert prompt_rate(report) == (None if known is None or report.prompt_eval_s is None else (prompted - cached) / report.prompt_eval_s)


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


NDJSON, SSE = "application/x-ndjson", "text/event-stream"
CHAT_CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"a"},"finish_reason":null}]}\n\n'
CHAT_END = b'data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}\n\n'
CREATED = b'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"r","status":"in_progress"}}\n\n'
DELTA = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"a"}\n\n'
MESSAGE_START = b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"m","usage":{"input_tokens":9,"output_tokens":0}}}\n\n'
MESSAGE_DELTA = b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":5,"output_tokens":2}}\n\n'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
# name: (route, content type, the stream, the error its report must give, and its finish reason)
BROKEN = {
    "ndjson nothing": ("/api/generate", NDJSON, b"", "the stream ended without Ollama's final chunk", None),
    "ndjson cut mid-line": ("/api/generate", NDJSON, b'{"model":"m","response":"a","done":false}\n{"model":"m","resp', "the stream ended on a line that is not JSON", None),
    "ndjson not an object": ("/api/chat", NDJSON, b'{"model":"m","done":false}\n[1,2]\n', "the stream ended on a line that is not a JSON object", None),
    "ndjson never done": ("/api/chat", NDJSON, b'{"model":"m","message":{"role":"assistant","content":"a"},"done":false}\n', "the stream ended before Ollama's final chunk", None),
    "ndjson error line": ("/api/chat", NDJSON, b'{"model":"m","done":false}\n{"error":"out of memory"}\n', "out of memory", None),
    "sse without [DONE]": ("/v1/chat/completions", SSE, CHAT_CHUNK + CHAT_END, "the stream ended before data: [DONE]", "stop"),
    "sse error event": ("/v1/chat/completions", SSE, CHAT_CHUNK + b'data: {"error":{"message":"model crashed","type":"api_error"}}\n\ndata: [DONE]\n\n', "model crashed", None),
    "responses never completed": ("/v1/responses", SSE, CREATED + DELTA, "the stream ended before response.completed", None),
    "responses failed": ("/v1/responses", SSE, CREATED + DELTA + b'event: response.failed\ndata: {"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"runner stopped"}}}\n\n', "runner stopped", None),
    "responses failed, no reason": ("/v1/responses", SSE, CREATED + b'event: response.failed\ndata: {"type":"response.failed","response":{"status":"failed"}}\n\n', "the response failed", None),
    "responses error event": ("/v1/responses", SSE, CREATED + b'event: error\ndata: {"type":"error","error":{"message":"bad input"}}\n\n', "bad input", None),
    "responses error not json": ("/v1/responses", SSE, CREATED + b'event: error\ndata: {"type":\n\n', "the stream ended before response.completed", None),
    "messages never stopped": ("/v1/messages", SSE, MESSAGE_START + MESSAGE_DELTA, "the stream ended before message_stop", "end_turn"),
    "messages error event": ("/v1/messages", SSE, MESSAGE_START + b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n', "Overloaded", None),
    "messages error, no reason": ("/v1/messages", SSE, MESSAGE_START + b'event: error\ndata: {"type":"error"}\n\n', "the stream carried an error event", None),
    "messages nothing": ("/v1/messages", SSE, b"", "the stream ended before message_stop", None),
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_stream_reports_what_broke_whatever_the_chunk_boundaries(name):
    route, content_type, stream, error, finish = BROKEN[name]
    for chunks in (pieces(stream, 1), pieces(stream, 5), [stream]):
        watcher = watcher_for(route, content_type)
        for chunk in chunks:
            watcher.feed(chunk)
        report = watcher.report()
        assert (report.error, report.finish_reason) == (error, finish), (name, report)


def test_a_messages_stream_reads_its_counts_from_the_last_delta_not_the_estimate():
    """message_start carries Ollama's estimate of the input (9 here); the counts are message_delta's (5, 2)."""
    watcher = watcher_for("/v1/messages", SSE)
    for chunk in (MESSAGE_START, b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}\n\n', MESSAGE_DELTA, MESSAGE_STOP):
        watcher.feed(chunk)
    report = watcher.report()
    assert (report.input_tokens, report.output_tokens, report.finish_reason, report.error) == (5, 2, "end_turn", None)


def test_a_completed_event_larger_than_the_bound_is_dropped_not_held():
    """response.completed repeats the whole answer; past MAX_BODY_BYTES no more of it is kept, and its report
    is then unknown (the cut JSON does not parse) rather than read from part of it."""
    from otel_proxy import watch

    watcher = watcher_for("/v1/responses", SSE)
    watcher.feed(CREATED + b'event: response.completed\ndata: {"type":"response.completed","response":{"status":"completed","output":[{"type":"message","content":[{"text":"')
    block = b"x" * (1 << 20)
    for _ in range(watch.MAX_BODY_BYTES // len(block) + 2):
        watcher.feed(block)
    watcher.feed(b'"}]}],"usage":{"input_tokens":1,"output_tokens":2}}}\n\n')
    assert watcher._final_size < watch.MAX_BODY_BYTES + len(block) + 200
    assert watcher.report().error == "the stream ended before response.completed"


def test_an_endless_line_is_forgotten_and_the_next_line_read():
    from otel_proxy import watch

    watcher = watcher_for("/api/generate", NDJSON)
    block = b"y" * (1 << 20)
    for _ in range(watch.MAX_LINE_BYTES // len(block) + 1):
        watcher.feed(block)
    assert watcher._partial_size == 0 and watcher.report().error == "the stream ended without Ollama's final chunk"
    watcher.feed(b'\n{"model":"m","done":true,"done_reason":"stop","eval_count":3,"prompt_eval_count":2}\n')
    report = watcher.report()
    assert (report.error, report.output_tokens, report.input_tokens) == (None, 3, 2)


def test_a_whole_body_past_its_bound_is_read_from_its_tail():
    """A non-streamed answer over MAX_BODY_BYTES: only its tail is kept, where Ollama writes its counts."""
    from otel_proxy import watch

    head = b'{"model":"m","created_at":"2026-12-03T00:00:00Z","response":"'
    end = b'","done":true,"done_reason":"stop","prompt_eval_count":4,"eval_count":7,"eval_duration":5000000}'
    watcher = watcher_for("/api/generate", "application/json; charset=utf-8")
    watcher.feed(head)
    block = b"z" * (1 << 20)
    for _ in range(watch.MAX_BODY_BYTES // len(block) + 1):
        watcher.feed(block)
    watcher.feed(end)
    assert watcher._chunks == [] and watcher._tail.bytes() == block + end  # the chunks that hold the last TAIL_BYTES
    report = watcher.report()
    # only the numeric fields are read from a tail (ollama.report_from_tail): the done reason is left unknown
    assert (report.input_tokens, report.output_tokens, report.finish_reason, report.eval_s) == (4, 7, None, 0.005)


@pytest.mark.parametrize(("route", "content_type", "kind"), [
    ("/api/generate", "application/x-ndjson", "NdjsonWatcher"),
    ("/api/chat", "application/json; charset=utf-8", "BodyWatcher"),
    ("/v1/chat/completions", "text/event-stream", "SseWatcher"),
    ("/v1/completions", "text/event-stream; charset=utf-8", "SseWatcher"),
    ("/v1/responses", "text/event-stream", "ResponsesWatcher"),
    ("/v1/messages", "text/event-stream", "MessagesWatcher"),
    ("/v1/messages", "application/json", "BodyWatcher"),
    ("/api/tags", "application/json", "NothingToWatch"),
    ("/api/pull", "application/x-ndjson", "NothingToWatch"),
])
def test_each_answer_gets_the_watcher_for_its_format(route, content_type, kind):
    assert type(watcher_for(route, content_type)).__name__ == kind


def test_a_messages_delta_whose_fields_are_not_objects_reports_what_it_can():
    """A message_delta whose ``delta`` is null and whose ``usage`` is a list: no counts and no finish reason are
    read from it, and the stream, which did stop, is not broken."""
    body = MESSAGE_START + b'event: message_delta\ndata: {"type":"message_delta","delta":null,"usage":[1,2]}\n\n' + MESSAGE_STOP
    for chunks in (pieces(body, 7), [body]):
        watcher = MessagesWatcher()
        for chunk in chunks:
            watcher.feed(chunk)
        report = watcher.report()
        assert (report.error, report.finish_reason, report.input_tokens, report.output_tokens) == (None, None, None, None), report
