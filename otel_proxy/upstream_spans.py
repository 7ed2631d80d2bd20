"""The CLIENT span of each call to Ollama, made by the proxy itself (the default).

opentelemetry-instrumentation-httpx makes this span with a wrapper that costs 130–150
µs a call when the span is not even recorded and 230–280 µs when it is exported
(bench/client_span_cost.py): it re-parses the URL and normalises every request and
response header on each call, for header capture that is off. At 32 concurrent streams
that wrapper alone keeps the proxy from its latency targets, even with cores to spare
(docs/benchmarks.md, item 20).

``ClientSpanTransport`` makes the same span for about 10 µs unrecorded and 55 exported:
the same name, kind, parent, start and end (the call to the transport, until the
response's headers), the same attributes computed by the instrumentation's own functions
(once per distinct URL and per response status, then cached), the same status and
exception event, and the same ``traceparent`` (any configured propagator) sent to
Ollama. The one difference is its instrumentation scope, ``otel_proxy`` rather than
``opentelemetry.instrumentation.httpx``. ``--client-spans httpx`` has the
instrumentation's wrapper make it instead, and so does any setting only the
instrumentation honours (captured headers, excluded URLs): see ``why_instrumented``.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Mapping

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
# Private: the instrumentation's own semantic-convention switch and attribute functions
# (opentelemetry-instrumentation 0.66b2 and opentelemetry-instrumentation-httpx 0.66b2, as
# requirements/*.txt lock them), so the span's attributes are the instrumentation's exactly;
# tests/stack/test_shortcuts.py fails if an upgrade moves them.
from opentelemetry.instrumentation._semconv import (
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
    _report_new,
)
from opentelemetry.instrumentation.httpx import (
    _apply_request_client_attributes_to_span,
    _apply_response_client_attributes_to_span,
    _get_default_span_name,
)
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import Event
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_ESCAPED, EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE, EXCEPTION_TYPE
from opentelemetry.trace import NonRecordingSpan, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from otel_proxy.spans import UNSET, FinishedSpans

CACHE_SIZE = 1024

# Settings that only the instrumentation honours: with any of them set, it makes the spans.
INSTRUMENTATION_ONLY = (
    "OTEL_PYTHON_HTTPX_EXCLUDED_URLS",
    "OTEL_PYTHON_EXCLUDED_URLS",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
)


def why_instrumented(choice: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why the instrumentation makes the client spans under ``choice``; None if the proxy makes them."""
    if choice == "httpx":
        return "--client-spans httpx"
    configured = [name for name in INSTRUMENTATION_ONLY if environ.get(name)]
    if configured:
        return f"{', '.join(configured)} is set, which only opentelemetry-instrumentation-httpx honours"
    return None


class _Attributes:
    """Stands in for a span while the instrumentation's response function writes to it."""

    def __init__(self) -> None:
        self.attributes: dict[str, AttributeValue] = {}
        self.status = UNSET

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self.status = status if isinstance(status, Status) else Status(status, description)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self.attributes.update(attributes)


class ClientSpanTransport(httpx.AsyncBaseTransport):
    """Wraps the upstream transport with the CLIENT span the httpx instrumentation would make."""

    def __init__(self, transport: httpx.AsyncBaseTransport, spans: FinishedSpans) -> None:
        self._transport = transport
        self._spans = spans
        _OpenTelemetrySemanticConventionStability._initialize()
        self._mode = _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
            _OpenTelemetryStabilitySignalType.HTTP
        )
        self._requests: dict[tuple[str, str], tuple[str, dict[str, AttributeValue]]] = {}
        self._responses: dict[tuple[int, str], tuple[Status, dict[str, AttributeValue]]] = {}

    def _request(self, method: str, url: str) -> tuple[str, dict[str, AttributeValue]]:
        """The span's name and request attributes: depending on method and URL alone, computed once."""
        known = self._requests.get((method, url))
        if known is None:
            attributes: dict[str, AttributeValue] = {}
            _apply_request_client_attributes_to_span(attributes, {}, httpx.URL(url), method, self._mode, httpx)
            known = (_get_default_span_name(method), attributes)
            if len(self._requests) >= CACHE_SIZE:
                self._requests.clear()
            self._requests[(method, url)] = known
        return known

    def _response(self, status_code: int, http_version: str) -> tuple[Status, dict[str, AttributeValue]]:
        known = self._responses.get((status_code, http_version))
        if known is None:
            written = _Attributes()
            _apply_response_client_attributes_to_span(written, status_code, http_version, self._mode, httpx)  # type: ignore[arg-type]
            known = (written.status, written.attributes)
            if len(self._responses) >= CACHE_SIZE:
                self._responses.clear()
            self._responses[(status_code, http_version)] = known
        return known

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        current = otel_context.get_current()
        parent = trace.get_current_span(current).get_span_context()
        method = request.method
        name, request_attributes = self._request(method, str(request.url))
        start = time.time_ns()
        caller = parent if parent.is_valid else None
        span = self._spans.child(parent) if caller else self._spans.root(None, name, SpanKind.CLIENT, request_attributes)
        carrier: dict[str, str] = {}
        inject(carrier, context=trace.set_span_in_context(NonRecordingSpan(span), current))
        for key, value in carrier.items():
            request.headers[key] = value
        try:
            response = await self._transport.handle_async_request(request)
        except Exception as exc:
            attributes = dict(request_attributes)
            if _report_new(self._mode):
                attributes[ERROR_TYPE] = type(exc).__qualname__
            event = Event("exception", _exception_attributes(exc), time.time_ns())
            status = Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            self._spans.emit(name, span, caller, SpanKind.CLIENT, attributes, start, time.time_ns(), status, (event,))
            raise
        except BaseException:  # cancelled: the span ends, as the instrumentation's does, with no error recorded
            self._spans.emit(name, span, caller, SpanKind.CLIENT, dict(request_attributes), start, time.time_ns())
            raise
        status, response_attributes = self._response(response.status_code, response.http_version)
        attributes = {**request_attributes, **response_attributes}
        self._spans.emit(name, span, caller, SpanKind.CLIENT, attributes, start, time.time_ns(), status)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


def _exception_attributes(exc: BaseException) -> dict[str, AttributeValue]:
    """What the SDK's ``Span.record_exception`` records."""
    module, qualname = type(exc).__module__, type(exc).__qualname__
    return {
        EXCEPTION_TYPE: f"{module}.{qualname}" if module and module != "builtins" else qualname,
        EXCEPTION_MESSAGE: str(exc),
        EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exc)),
        EXCEPTION_ESCAPED: "False",
    }

