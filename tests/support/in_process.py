"""The proxy served in this process over a real socket, its spans kept in memory: for tests that read its spans or its scheduler view."""

from __future__ import annotations

import threading
import time

import uvicorn
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_proxy import ProxySettings, create_app
from ollama_otel_stack.telemetry import setup_telemetry
from tests.support.harness import free_port


class InProcessProxy:
    def __init__(self, upstream: str, capture_content: bool = False, client_spans: str = "proxy", metric_readers: tuple = ()) -> None:
        self.exporter = InMemorySpanExporter()
        port = free_port()
        settings = ProxySettings(port=port, upstream=upstream, capture_content=capture_content, client_spans=client_spans, ps_interval_s=0.2)
        telemetry = setup_telemetry("otel-proxy", "test", environ={}, extra_span_processors=[SimpleSpanProcessor(self.exporter)], extra_metric_readers=metric_readers)
        self.telemetry = telemetry
        self.app = create_app(settings, telemetry)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
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

    def read_ps_again(self, timeout: float = 10.0) -> None:
        """Returns once the proxy's scheduler view has taken in an /api/ps answer read after this call."""
        # one read may already be under way with the old answer: wait for the one after it
        target = self.app.scheduler.ps_reads + 2
        deadline = time.monotonic() + timeout
        while self.app.scheduler.ps_reads < target:
            assert time.monotonic() < deadline, "the proxy did not read /api/ps"
            time.sleep(0.02)

    def spans_of_trace(self, trace_id: int, at_least: int, timeout: float = 5.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            spans = [s for s in self.exporter.get_finished_spans() if s.context.trace_id == trace_id]
            if len(spans) >= at_least or time.monotonic() > deadline:
                return spans
            time.sleep(0.02)
