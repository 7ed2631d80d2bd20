"""Each fast path that leans on OpenTelemetry internals is really taken with the locked versions.

They all fall back to the SDK's own path when the internals they read are gone, which keeps
the proxy correct after an upgrade but silently slower. These tests fail instead, so an
upgrade that breaks a shortcut (make lock) is noticed, not shipped. What each one saves is
measured in docs/benchmarks.md ("The shortcuts, each against the SDK's path").
"""

from __future__ import annotations

import opentelemetry.exporter.otlp.proto.common.trace_encoder as trace_encoder
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ollama_otel_stack import otlp_spans
from ollama_otel_stack.otlp_spans import LeanOTLPSpanExporter, PreEncodingSpanProcessor, SpanEncoder
from ollama_otel_stack.telemetry import SHORTCUTS, setup_telemetry, shortcuts_from
from otel_proxy.app import ProxyApp
from otel_proxy.upstream_spans import ClientSpanTransport
from otel_proxy.config import ProxySettings
from otel_proxy.recorder import Recorder
from tests.support.spans import finished_spans, sdk_spans

ATTRIBUTES = {"gen_ai.provider.name": "ollama", "gen_ai.operation.name": "chat", "gen_ai.request.model": "llama3.2:1b"}


def test_metric_records_of_a_known_attribute_set_skip_the_sdk_path():
    provider = MeterProvider(metric_readers=[InMemoryMetricReader(), InMemoryMetricReader()])
    recorder = Recorder(provider.get_meter("t").create_histogram("d", unit="s"))
    assert recorder._enabled, "the SDK internals otel_proxy/recorder.py reads are gone: every record takes the SDK's path"
    sdk_calls = []
    sdk_record = recorder._sdk_call
    recorder._sdk_call = lambda value, attributes: (sdk_calls.append(value), sdk_record(value, attributes))
    for value in (0.5, 1.5, 2.5):
        recorder.record(value, ATTRIBUTES)
    assert sdk_calls == [0.5], "only the first record of an attribute set should take the SDK's path"


def test_the_span_encoder_writes_every_span_itself_without_the_sdk_encoder(monkeypatch):
    exporter = LeanOTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    assert exporter.lean, "the OTLP exporter internals LeanOTLPSpanExporter reads are gone: it exports through the SDK's encoder"
    fallbacks = []
    monkeypatch.setattr(otlp_spans, "sdk_encode_spans", lambda spans: fallbacks.append(len(spans)) or trace_encoder.encode_spans(spans))
    spans = sdk_spans() + finished_spans()
    encoder = SpanEncoder()
    assert encoder.encode(spans)
    assert fallbacks == [], "SpanEncoder fell back to the SDK's encoder for the spans the services make"


def test_setup_telemetry_wires_the_shortcuts_and_the_switch_turns_them_off():
    assert shortcuts_from({}) == SHORTCUTS == shortcuts_from({"OLLAMA_OTEL_SHORTCUTS": "all"})
    assert shortcuts_from({"OLLAMA_OTEL_SHORTCUTS": "none"}) == frozenset()
    assert shortcuts_from({"OLLAMA_OTEL_SHORTCUTS": "span_encoder, bogus"}) == {"span_encoder"}
    on = setup_telemetry("t", "i", environ={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    off = setup_telemetry("t", "i", environ={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OLLAMA_OTEL_SHORTCUTS": "none"})
    try:
        kinds_on = [type(p) for p in on.span_processor._span_processors]
        kinds_off = [type(p) for p in off.span_processor._span_processors]
        assert kinds_on == [PreEncodingSpanProcessor] and PreEncodingSpanProcessor not in kinds_off
        assert on.page is not None and off.page is None and b"python_info" in off.prometheus_text()
        app_on, app_off = ProxyApp(ProxySettings(), on), ProxyApp(ProxySettings(), off)
        assert app_on.forwarder._observers.instruments.request_duration._enabled
        assert not app_off.forwarder._observers.instruments.request_duration._enabled
    finally:
        on.shutdown()
        off.shutdown()


def test_the_proxy_makes_its_client_spans_itself_by_default():
    telemetry = setup_telemetry("t", "i", environ={})
    app = ProxyApp(ProxySettings(), telemetry)
    assert isinstance(app.forwarder._transport, ClientSpanTransport)
