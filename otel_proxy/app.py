"""The proxy's routes: its own few under ``/metrics`` and ``/-/``, everything else to Ollama."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import contextlib
import gc
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otel_proxy.bookkeeping import Bookkeeper
from otel_proxy.clients import MAX_NAME_LENGTH, KeyFile, presented_key
from otel_proxy.config import ProxySettings
from otel_proxy.forward import Forwarder, Receive, Scope, Send, UpstreamAborted
from otel_proxy.instruments import ProxyInstruments
from otel_proxy.labels import UNKNOWN_MODEL, BoundedNames
from otel_proxy.observer import ObserverContext
from otel_proxy.continuations import Conversations, Fingerprints
from otel_proxy.ps_poller import PsPoller
from otel_proxy.recent import RecentRequests
from otel_proxy.scheduling import SchedulerView
from otel_proxy.spans import FinishedSpans
from otel_proxy.upstream import UpstreamTransport
from otel_proxy.upstream_spans import ClientSpanTransport, why_instrumented
from ollama_otel_stack.telemetry import PROMETHEUS_CONTENT_TYPE, Telemetry

log = logging.getLogger(__name__)

# While a page renders, the event loop waits at most this long for the GIL (CPython's default is 5 ms).
RENDER_SWITCH_S = 0.0005
KEY_FILE_CHECK_S = 1.0
FIRST_READ_WAIT_S = 2.0  # how long the proxy waits, at start, for Ollama's /api/ps before it serves
OWN_PATHS = frozenset({"/metrics", "/-/healthy", "/-/ready", "/-/requests", "/-/in-flight"})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


class _DropAbortedStreamTracebacks(logging.Filter):
    """uvicorn logs a traceback when an app ends a response unfinished; for ours, one line was logged already."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], UpstreamAborted))


def upstream_transport(settings: ProxySettings, after_send: Callable[[], None]) -> httpx.AsyncBaseTransport:
    """The lean HTTP/1.1 transport for plain-http Ollama; httpx's own for an https upstream or on request.

    ``after_send`` runs each time a request is written to Ollama (the lean transport only).
    """
    if urlsplit(settings.upstream).scheme == "http" and settings.upstream_transport == "proxy":
        return UpstreamTransport(after_send=after_send)
    # Streams can be long and many: never queue a request behind a pool limit.
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=30))


async def _watch_key_file(keys: KeyFile) -> None:
    """The keys file read again when it changes (SIGHUP reads it at once). Whatever goes wrong with one read is logged and
    the keys in force stay: the watcher lives on, so a key removed from the file later is revoked later."""
    while True:
        await asyncio.sleep(KEY_FILE_CHECK_S)
        try:
            keys.reload_if_changed()
        except Exception:
            log.exception("--api-keys %s could not be read again; the %d keys read before stay in force", keys.path, len(keys.keys.pairs))


class ProxyApp:
    """Dispatches on the path: the hot path goes straight to the forwarder, no router in between."""

    def __init__(self, settings: ProxySettings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.recent = RecentRequests(settings.recent_requests)
        self._render_lock = threading.Lock()
        self.bookkeeper = Bookkeeper()
        self.scheduler = SchedulerView(settings.cold_load_threshold_s, settings.num_parallel)
        self.ps_poller = PsPoller(settings.upstream, settings.ps_interval_s, settings.connect_timeout_s, self.scheduler, self.bookkeeper)
        self.fingerprints = Fingerprints() if settings.conversations > 0 else None
        spans = FinishedSpans(telemetry, "otel_proxy")
        transport = upstream_transport(settings, self.bookkeeper.run)
        instrumented = why_instrumented(settings.client_spans)
        if instrumented is None:
            transport = ClientSpanTransport(transport, spans)
            log.info("client spans to Ollama are made by the proxy (--client-spans proxy)")
        elif settings.client_spans == "proxy":
            log.warning("client spans are made by opentelemetry-instrumentation-httpx: %s", instrumented)
        else:
            log.info("client spans to Ollama are made by opentelemetry-instrumentation-httpx (%s)", instrumented)
        self.client = httpx.AsyncClient(transport=transport, timeout=settings.timeout, follow_redirects=False, trust_env=False)
        if instrumented is not None:
            # The instrumentation wraps this transport instance: the forwarder's calls to it make the client spans.
            HTTPXClientInstrumentor.instrument_client(
                self.client, tracer_provider=telemetry.tracer_provider, meter_provider=NoOpMeterProvider()
            )
        upstream = urlsplit(settings.upstream)
        self.observers = observers = ObserverContext(
            settings=settings,
            instruments=ProxyInstruments(telemetry.meter("otel_proxy"), shortcut="metric_records" in telemetry.shortcuts),
            spans=spans,
            models=BoundedNames(settings.max_models, empty=UNKNOWN_MODEL),
            recent=self.recent,
            bookkeeper=self.bookkeeper,
            scheduler=self.scheduler,
            catalog=self.ps_poller.resident.catalog,
            clients=BoundedNames(settings.max_clients, max_length=MAX_NAME_LENGTH),
            upstream_host=upstream.hostname or "",
            upstream_port=upstream.port or (443 if upstream.scheme == "https" else 80),
            fingerprints=self.fingerprints,
            conversations=Conversations(settings.conversations),
            ollama_version=lambda: self.ps_poller.version,
        )
        self.forwarder = Forwarder(settings, transport, observers)
        self.own_routes = Starlette(
            routes=[
                Route("/metrics", self.metrics),
                Route("/-/healthy", self.healthy),
                Route("/-/ready", self.ready),
                Route("/-/requests", self.requests),
                Route("/-/in-flight", self.in_flight),
            ],
            lifespan=self.lifespan,
        )
        logging.getLogger("uvicorn.error").addFilter(_DropAbortedStreamTracebacks())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OWN_PATHS:
            await self.forwarder(scope, receive, send)
        else:
            await self.own_routes(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        log.info("otel-proxy on http://%s:%d forwarding to %s", self.settings.host, self.settings.port, self.settings.upstream)
        if self.settings.api_keys is None and not _is_loopback(self.settings.host):
            log.warning("otel-proxy listens on %s with no API keys: anyone who can reach port %d can use Ollama (every model, pull and delete) "
                        "and read /metrics and /-/requests; set --api-keys (and --metrics-token), or bind 127.0.0.1", self.settings.host, self.settings.port)
        # Everything imported and built so far lives as long as the process: keep it out of
        # the collector's way so GC pauses stay short on the streaming path.
        gc.freeze()
        watchers = [asyncio.create_task(self.ps_poller.run())]
        # Serve once the first /api/ps is in (or has failed), so that the first requests are told
        # cold from warm; an Ollama that does not answer soon holds nothing up.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ps_poller.first_read.wait(), FIRST_READ_WAIT_S)
        keys = self.settings.api_keys
        if isinstance(keys, KeyFile):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, keys.reload)
            watchers.append(asyncio.create_task(_watch_key_file(keys)))
        yield
        for watcher in watchers:
            watcher.cancel()
        self.bookkeeper.drain()
        self.scheduler.flush()
        if self.fingerprints is not None:
            self.fingerprints.close()
        await self.client.aclose()

    def _refused(self, request: Request) -> Response | None:
        """A 401 for /metrics, /-/requests and /-/ready without the scrape token, when one is set.

        The token is presented as a key is (otel_proxy/clients.py ``presented_key``: one Authorization
        or x-api-key header, the same rules) and compared in constant time.
        """
        token = self.settings.metrics_token
        if token is None:
            return None
        presented, problem = presented_key(request.headers.raw)
        if problem is None and presented is not None and hmac.compare_digest(hashlib.sha256(presented).digest(), hashlib.sha256(token.encode()).digest()):
            return None
        return JSONResponse({"error": f"otel-proxy: this path needs the scrape token (Authorization: Bearer <--metrics-token>){'; ' + problem if problem else ''}"}, status_code=401)

    async def metrics(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        self.bookkeeper.drain()
        # Rendered off the event loop: at 100 models a page takes ~200 ms of CPU, which on the
        # loop would stall every stream for as long (docs/benchmarks.md, "Scrapes and streams").
        page = await asyncio.to_thread(self._render)
        return Response(page, media_type=PROMETHEUS_CONTENT_TYPE)

    def _render(self) -> bytes:
        """The page, in a worker thread that hands the GIL back to the event loop every RENDER_SWITCH_S."""
        with self._render_lock:  # one page at a time: the switch interval is the process's
            interval = sys.getswitchinterval()
            sys.setswitchinterval(RENDER_SWITCH_S)
            try:
                return self.telemetry.prometheus_text()
            finally:
                sys.setswitchinterval(interval)

    async def healthy(self, request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    async def ready(self, request: Request) -> Response:
        """Ready when Ollama answers its version endpoint (which names Ollama's URL and version: behind the scrape token)."""
        if refused := self._refused(request):
            return refused
        url = self.settings.upstream.rstrip("/") + "/api/version"
        try:
            answer = await self.client.get(url, timeout=self.settings.connect_timeout_s)
            answer.raise_for_status()
            version: Any = answer.json().get("version")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            return JSONResponse({"error": f"Ollama at {self.settings.upstream} is not ready: {exc}"}, status_code=503)
        return JSONResponse({"status": "ready", "upstream": self.settings.upstream, "ollama_version": version})

    async def requests(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        try:
            limit = int(request.query_params.get("limit", self.settings.recent_requests))
        except ValueError:
            return JSONResponse({"error": "limit must be a whole number"}, status_code=400)
        self.bookkeeper.drain()
        entries = [finished.as_json() for finished in self.recent.newest_first(max(0, limit))]
        return JSONResponse({"capacity": self.settings.recent_requests, "requests": entries})


    async def in_flight(self, request: Request) -> Response:
        """The generation requests on their way to Ollama now, oldest first (otel_proxy/in_flight.py)."""
        if refused := self._refused(request):
            return refused
        self.bookkeeper.drain()
        return JSONResponse({"requests": self.observers.in_flight.oldest_first()})


def create_app(settings: ProxySettings, telemetry: Telemetry) -> ProxyApp:
    return ProxyApp(settings, telemetry)
