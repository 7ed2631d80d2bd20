"""OTLP/protobuf encoding of finished spans, written for the proxy's hot loop.

The SDK's encoder (``opentelemetry.exporter.otlp.proto.common``) builds a protobuf
message object for every span, attribute and value: about 40-60 µs a span, and the
proxy exports six spans a request. At 32 concurrent streams that encoding was the
largest piece of telemetry left in the proxy's CPU, and it is what cost the tail
latency (docs/benchmarks.md). This module writes the same ``ExportTraceServiceRequest``
bytes directly, reusing the bytes of what repeats from span to span (the resource, the
scope, and attributes such as ``http.route="/api/generate"``).

It is a drop-in for the SDK's ``encode_spans(...).SerializePartialToString()``: the tests
decode both with the official protobuf classes and compare. A span it does not handle
(links, an attribute value of a type OTLP has no field for, anything unforeseen) makes
the batch go through the SDK's encoder instead, so nothing is ever exported differently.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

# Private: the SDK encoder's own resource and scope encoders (opentelemetry-exporter-otlp-proto-common
# 1.45.2, as requirements/*.txt lock it), so those bytes are the SDK's exactly; tests/stack/test_shortcuts.py
# fails if an upgrade moves them.
from opentelemetry.exporter.otlp.proto.common._internal import _encode_instrumentation_scope, _encode_resource
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind

_logger = logging.getLogger(__name__)

ATTRIBUTE_CACHE_SIZE = 4096
PRE_ENCODED_LIMIT = 4096  # twice the batch processor's queue: spans it dropped are forgotten here too

# Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
_SPAN_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200
_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack
_pack_fixed32 = struct.Struct("<I").pack
_SMALL_VARINTS = [bytes([n]) for n in range(128)]


class Unsupported(Exception):
    """Something in a span this encoder leaves to the SDK's."""


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL_VARINTS[value]
    if value < 0:
        value += 1 << 64  # int64 in two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message (the fields of its oneof are written even when zero)."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _delimited(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _delimited(b"\x3a", value)
    if value is None:
        return b""
    if isinstance(value, Sequence):
        return _delimited(b"\x2a", b"".join(_delimited(b"\x0a", _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return _delimited(b"\x32", b"".join(_delimited(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    raise Unsupported(f"attribute value of type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return _delimited(b"\x0a", key.encode()) + _delimited(b"\x12", _any_value(value))


class SpanEncoder:
    """Encodes batches of finished spans; keeps the bytes of what repeats between them."""

    def __init__(self, attribute_cache_size: int = ATTRIBUTE_CACHE_SIZE) -> None:
        self._attributes: dict[tuple[str, type, Any], bytes] = {}
        self._cache_size = attribute_cache_size
        self._resources: dict[int, tuple[Any, bytes]] = {}
        self._scopes: dict[Any, bytes] = {}
        self._pre_encoded: dict[ReadableSpan, bytes] = {}  # by identity: spans that ended, not yet exported

    def pre_encode(self, span: ReadableSpan) -> None:
        """Encode ``span`` now, as it ends, so that exporting it only joins bytes.

        One that this encoder does not handle is left for the export (and the SDK's encoder).
        """
        try:
            encoded = self._span(span)
        except Exception:
            return
        if len(self._pre_encoded) >= PRE_ENCODED_LIMIT:
            self._pre_encoded.clear()
        self._pre_encoded[span] = encoded

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The serialized ``ExportTraceServiceRequest``, as the SDK's encoder would write it."""
        try:
            return self._encode(spans)
        except Exception:  # Unsupported, or a span shaped in a way this encoder did not foresee
            return sdk_encode_spans(spans).SerializePartialToString()

    def _encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        # Grouped as the SDK groups them (resource, then scope, in order of first appearance),
        # by identity first: a Resource hashes by serializing its attributes to JSON.
        by_identity: dict[int, tuple[Any, dict[Any, list[bytes]]]] = {}
        for span in spans:
            resource = span.resource
            group = by_identity.get(id(resource))
            if group is None:
                group = by_identity[id(resource)] = (resource, {})
            encoded = self._pre_encoded.pop(span, None)
            if encoded is None:
                encoded = self._span(span)
            group[1].setdefault(span.instrumentation_scope or None, []).append(encoded)
        grouped: dict[Any, dict[Any, list[bytes]]] = {}
        for resource, scopes in by_identity.values():
            merged = grouped.setdefault(resource, {})  # equal resources are one, as for the SDK
            for scope, encoded_spans in scopes.items():
                merged.setdefault(scope, []).extend(encoded_spans)
        resource_spans = []
        for resource, scopes in grouped.items():
            parts = [_delimited(b"\x0a", self._resource(resource))]
            for scope, encoded in scopes.items():
                scope_parts = [_delimited(b"\x0a", self._scope(scope))]
                scope_parts += [_delimited(b"\x12", span) for span in encoded]
                if scope is not None and scope.schema_url:
                    scope_parts.append(_delimited(b"\x1a", scope.schema_url.encode()))
                parts.append(_delimited(b"\x12", b"".join(scope_parts)))
            if resource.schema_url:
                parts.append(_delimited(b"\x1a", resource.schema_url.encode()))
            resource_spans.append(_delimited(b"\x0a", b"".join(parts)))
        return b"".join(resource_spans)

    def _resource(self, resource: Any) -> bytes:
        cached = self._resources.get(id(resource))
        if cached is None or cached[0] is not resource:
            cached = self._resources[id(resource)] = (resource, _encode_resource(resource).SerializePartialToString())
        return cached[1]

    def _scope(self, scope: Any) -> bytes:
        encoded = self._scopes.get(scope)
        if encoded is None:
            encoded = self._scopes[scope] = _encode_instrumentation_scope(scope).SerializePartialToString()
        return encoded

    def _attribute(self, key: str, value: Any) -> bytes:
        """One ``KeyValue`` field of a span, from the cache for values that repeat.

        Strings, integers and booleans (told apart by type: ``True == 1``) and tuples of
        strings are cached; floats are not (they rarely repeat, and ``0.0 == -0.0``).
        """
        kind = type(value)
        if kind is str or kind is int or kind is bool or (kind is tuple and all(type(item) is str for item in value)):
            cache_key = (key, kind, value)
            encoded = self._attributes.get(cache_key)
            if encoded is None:
                if len(self._attributes) >= self._cache_size:
                    self._attributes.clear()
                encoded = self._attributes[cache_key] = _delimited(b"\x4a", _key_value(key, value))
            return encoded
        return _delimited(b"\x4a", _key_value(key, value))

    def _span(self, span: ReadableSpan) -> bytes:
        if span.links:
            raise Unsupported("links")
        context = span.get_span_context()
        assert context is not None
        parent = span.parent
        parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08", context.span_id.to_bytes(8, "big")]
        trace_state = ",".join(f"{key}={value}" for key, value in context.trace_state.items()) if context.trace_state else ""
        if trace_state:
            parts.append(_delimited(b"\x1a", trace_state.encode()))
        if parent is not None:
            parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
        if span.name:
            parts.append(_delimited(b"\x2a", span.name.encode()))
        parts += (b"\x30", _SMALL_VARINTS[_SPAN_KIND[span.kind]])
        if span.start_time:
            parts += (b"\x39", _pack_fixed64(span.start_time))
        if span.end_time:
            parts += (b"\x41", _pack_fixed64(span.end_time))
        attributes = span.attributes
        if attributes:
            attribute = self._attribute
            parts += [attribute(key, value) for key, value in attributes.items()]
        if span.dropped_attributes:
            parts += (b"\x50", _varint(span.dropped_attributes))
        for event in span.events:
            parts.append(_delimited(b"\x5a", self._event(event)))
        if span.dropped_events:
            parts += (b"\x60", _varint(span.dropped_events))
        status = span.status
        if status is not None:
            status_parts = []
            if status.description:
                status_parts.append(_delimited(b"\x12", status.description.encode()))
            if status.status_code.value:
                status_parts += (b"\x18", _varint(status.status_code.value))
            parts.append(_delimited(b"\x7a", b"".join(status_parts)))
        flags = _FLAGS_HAS_IS_REMOTE | (_FLAGS_IS_REMOTE if parent is not None and parent.is_remote else 0)
        parts += (b"\x85\x01", _pack_fixed32(flags))
        return b"".join(parts)

    def _event(self, event: Any) -> bytes:
        parts = [b"\x09", _pack_fixed64(event.timestamp)]
        if event.name:
            parts.append(_delimited(b"\x12", event.name.encode()))
        for key, value in (event.attributes or {}).items():
            parts.append(_delimited(b"\x1a", _key_value(key, value)))
        if event.dropped_attributes:
            parts += (b"\x20", _varint(event.dropped_attributes))
        return b"".join(parts)


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter (endpoint, headers, retries, compression all its
    own, from the same ``OTEL_EXPORTER_OTLP_*`` settings), encoding with ``SpanEncoder``.

    ``export`` is the SDK's, step for step, with the encoder swapped. It leans on the SDK
    exporter's internals (``_client``, ``_metrics``, ``_shutdown``, ``_max_request_size``, as
    opentelemetry-exporter-otlp-proto-http 1.45.2 has them); should a later SDK rename them,
    it falls back to the SDK's own ``export``, and tests/stack/test_shortcuts.py fails.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder = SpanEncoder()
        self.lean = all(hasattr(self, name) for name in ("_client", "_metrics", "_shutdown", "_max_request_size"))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.lean or self._shutdown:
            return super().export(spans)
        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = self.encoder.encode(spans)
            except Exception as error:  # the SDK's encoder failed too (it would have logged the same)
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if 0 < self._max_request_size < len(data):
                _logger.warning("Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.", len(data), self._max_request_size)
                return SpanExportResult.FAILURE
            sent = self._client.export(data)
            if not sent.success:
                result.error = sent.error
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


class PreEncodingSpanProcessor(SpanProcessor):
    """Encodes each sampled span as it ends, then hands it to ``processor`` (the batch processor).

    The batch processor's thread would encode 512 spans at once, holding the GIL for
    milliseconds while the event loop waits for it: that was most of the tail latency that
    exporting spans adds at 32 concurrent streams (docs/benchmarks.md, item 18). Encoded
    as they end, a request's spans cost the loop about 20 µs each, spread out, and the
    export only joins bytes.
    """

    def __init__(self, processor: SpanProcessor, encoder: SpanEncoder) -> None:
        self._processor = processor
        self._encoder = encoder

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self._processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is not None and context.trace_flags.sampled:
            self._encoder.pre_encode(span)
        self._processor.on_end(span)

    def shutdown(self) -> None:
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._processor.force_flush(timeout_millis)
