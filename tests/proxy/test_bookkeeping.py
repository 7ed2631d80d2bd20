"""The bookkeeper: deferred recording, in order, never lost, never in another request's context."""

from __future__ import annotations

import asyncio
import logging

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_proxy.bookkeeping import Bookkeeper


def test_without_an_event_loop_work_runs_at_once():
    done: list[int] = []
    keeper = Bookkeeper()
    keeper.defer(lambda: done.append(1))
    assert done == [1] and len(keeper) == 0


def test_work_waits_for_run_or_the_timer_and_keeps_its_order():
    async def scenario() -> tuple[list[int], list[int], list[int]]:
        done: list[int] = []
        keeper = Bookkeeper(delay_s=0.05)
        keeper.defer(lambda: done.append(1))
        keeper.defer(lambda: done.append(2))
        before = list(done)
        keeper.run()
        after_run = list(done)
        keeper.defer(lambda: done.append(3))
        await asyncio.sleep(0.01)
        assert done == [1, 2]  # the timer has not fired yet
        await asyncio.sleep(0.1)
        return before, after_run, done

    before, after_run, done = asyncio.run(scenario())
    assert before == [] and after_run == [1, 2] and done == [1, 2, 3]


def test_run_takes_a_slice_and_the_loops_next_turns_take_the_rest_in_order():
    async def scenario() -> tuple[list[int], list[int], list[int], list[int]]:
        done: list[int] = []
        keeper = Bookkeeper(delay_s=10, slice_s=0)  # a slice of one record; the timer would be far too late
        for number in range(4):
            keeper.defer(lambda number=number: done.append(number))
        keeper.run()
        after_run = list(done)
        await asyncio.sleep(0)
        after_a_turn = list(done)
        for _ in range(5):
            await asyncio.sleep(0)
        after_turns = list(done)
        for number in range(4, 8):
            keeper.defer(lambda number=number: done.append(number))
        keeper.drain()
        return after_run, after_a_turn, after_turns, done

    after_run, after_a_turn, after_turns, done = asyncio.run(scenario())
    assert after_run == [0]
    assert after_a_turn == [0, 1]
    assert after_turns == [0, 1, 2, 3]
    assert done == list(range(8))  # drain: everything at once


def test_a_failing_record_is_logged_and_loses_nothing_after_it(caplog):
    done: list[str] = []
    keeper = Bookkeeper()

    def broken() -> None:
        raise ValueError("bad record")

    async def scenario() -> None:
        keeper.defer(lambda: done.append("before"))
        keeper.defer(broken)
        keeper.defer(lambda: done.append("after"))
        keeper.run()

    with caplog.at_level(logging.ERROR, logger="otel_proxy.bookkeeping"):
        asyncio.run(scenario())
    assert done == ["before", "after"]
    assert any("bad record" in (record.exc_text or "") or record.exc_info for record in caplog.records)


def test_work_does_not_run_inside_the_span_current_where_run_is_called():
    seen: list[bool] = []
    keeper = Bookkeeper()
    other_request = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    async def scenario() -> None:
        keeper.defer(lambda: seen.append(trace.get_current_span().get_span_context().is_valid))
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(other_request)))
        try:
            assert trace.get_current_span().get_span_context().is_valid
            keeper.run()
        finally:
            otel_context.detach(token)

    asyncio.run(scenario())
    assert seen == [False]


def test_the_proxys_readers_run_the_queue_before_they_answer():
    """/metrics and /-/requests never show a request that ended but is not yet recorded."""
    from starlette.requests import Request

    from otel_proxy.app import ProxyApp
    from otel_proxy.config import ProxySettings
    from ollama_otel_stack.telemetry import setup_telemetry

    app = ProxyApp(ProxySettings(upstream="http://127.0.0.1:9"), setup_telemetry("otel-proxy", "test", environ={}))
    recorded: list[str] = []

    async def scenario() -> None:
        # Called directly, the handlers do not yield to the event loop first: only their own run records these.
        app.bookkeeper.defer(lambda: recorded.append("before /metrics"))
        await app.metrics(Request({"type": "http", "method": "GET", "path": "/metrics", "headers": [], "query_string": b""}))
        assert recorded == ["before /metrics"]
        app.bookkeeper.defer(lambda: recorded.append("before /-/requests"))
        await app.requests(Request({"type": "http", "method": "GET", "path": "/-/requests", "headers": [], "query_string": b""}))
        assert recorded == ["before /metrics", "before /-/requests"]

    asyncio.run(scenario())
    app.telemetry.shutdown()


def test_the_transport_calls_after_send_once_a_request_is_written_before_the_answer():
    import httpx

    from otel_proxy.upstream import UpstreamTransport

    events: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        events.append("upstream has the request")
        await asyncio.sleep(0.05)
        events.append("upstream answers")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async def scenario() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = UpstreamTransport(after_send=lambda: events.append("after_send"))
        request = httpx.Request("GET", f"http://127.0.0.1:{port}/api/version")
        response = await transport.handle_async_request(request)
        body = b"".join([part async for part in response.stream])
        await response.aclose()
        await transport.aclose()
        server.close()
        assert body == b"ok"

    asyncio.run(scenario())
    assert events.count("after_send") == 1
    assert events.index("after_send") < events.index("upstream answers")
