"""The collector's HTTP side: /metrics (read from the sampler's snapshot), /-/healthy, and /-/live (what Ollama's
log says each request in it is doing now: hw_collector/sources/ollama_log.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hw_collector.instruments import register
from hw_collector.sampler import Sampler
from ollama_otel_stack.telemetry import PROMETHEUS_CONTENT_TYPE, Telemetry


def create_app(sampler: Sampler, telemetry: Telemetry) -> Starlette:
    register(telemetry.meter("hw_collector"), sampler.snapshot)

    async def metrics(request: Request) -> Response:
        return Response(telemetry.prometheus_text(), media_type=PROMETHEUS_CONTENT_TYPE)

    async def healthy(request: Request) -> Response:
        return JSONResponse({"status": "healthy", "last_sample_seconds": sampler.last_sample_seconds})

    async def live(request: Request) -> Response:
        source = sampler.active("ollama_log")
        if source is None:
            return JSONResponse({"error": "Ollama's log is not read here: see hw_collector_source_up{source=\"ollama_log\"} and --ollama-log"}, status_code=404)
        return JSONResponse(source.live())  # type: ignore[attr-defined]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sampler.start()
        try:
            yield
        finally:
            sampler.stop()

    return Starlette(routes=[Route("/metrics", metrics), Route("/-/healthy", healthy), Route("/-/live", live)], lifespan=lifespan)
