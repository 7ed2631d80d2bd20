"""The collector's HTTP side: /metrics (read from the sampler's snapshot) and /-/healthy."""

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

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sampler.start()
        try:
            yield
        finally:
            sampler.stop()

    return Starlette(routes=[Route("/metrics", metrics), Route("/-/healthy", healthy)], lifespan=lifespan)
