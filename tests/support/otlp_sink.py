"""A minimal OTLP/HTTP receiver for the tests: keeps every export request, decoded with opentelemetry-proto."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest, ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.harness import free_port


class OtlpSink:
    def __init__(self) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.url = ""

    async def _traces(self, request: Request) -> Response:
        self.traces.append(ExportTraceServiceRequest.FromString(await request.body()))
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    async def _metrics(self, request: Request) -> Response:
        self.metrics.append(ExportMetricsServiceRequest.FromString(await request.body()))
        return Response(ExportMetricsServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    def spans(self) -> list[tuple[dict, object]]:
        """(resource attributes, span) for every span received."""
        found = []
        for export in self.traces:
            for resource_spans in export.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    found += [(resource, span) for span in scope.spans]
        return found

    def metric_names(self, service: str) -> set[str]:
        names = set()
        for export in self.metrics:
            for resource_metrics in export.resource_metrics:
                resource = {a.key: a.value.string_value for a in resource_metrics.resource.attributes}
                if resource.get("service.name") != service:
                    continue
                for scope in resource_metrics.scope_metrics:
                    names |= {metric.name for metric in scope.metrics}
        return names


def sink_app(sink: OtlpSink) -> Starlette:
    async def received(request: Request) -> Response:
        """What arrived, for a test outside this process (the compose test): span names by service."""
        return JSONResponse({"spans": [
            {"service": next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), ""), "name": span.name}
            for export in sink.traces for rs in export.resource_spans for ss in rs.scope_spans for span in ss.spans
        ]})

    return Starlette(routes=[
        Route("/v1/traces", sink._traces, methods=["POST"]),
        Route("/v1/metrics", sink._metrics, methods=["POST"]),
        Route("/sink/received", received),
    ])


@contextmanager
def otlp_sink() -> Iterator[OtlpSink]:
    sink = OtlpSink()
    port = free_port()
    app = sink_app(sink)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    sink.url = f"http://127.0.0.1:{port}"
    try:
        yield sink
    finally:
        server.should_exit = True
        thread.join(5)


def main() -> None:
    """``python -m tests.support.otlp_sink --port 4318``: the receiver as a server of its own (compose's otel-collector and jaeger in the tests)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, nargs="+", default=[4318])
    args = parser.parse_args()

    async def serve() -> None:
        import asyncio

        sink = OtlpSink()
        servers = [uvicorn.Server(uvicorn.Config(sink_app(sink), host=args.host, port=port, log_level="warning")) for port in args.port]
        await asyncio.gather(*(server.serve() for server in servers))

    import asyncio

    asyncio.run(serve())


if __name__ == "__main__":
    main()
