"""The shared OpenTelemetry set-up honours the standard environment variables."""

from __future__ import annotations

from ollama_otel_stack.telemetry import build_resource, exporters_for, setup_telemetry


def test_exporters_follow_the_otel_variables():
    assert exporters_for("traces", {}) == set()
    assert exporters_for("traces", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == {"otlp"}
    assert exporters_for("metrics", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) == set()
    assert exporters_for("traces", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}) == set()
    assert exporters_for("metrics", {"OTEL_METRICS_EXPORTER": "console,otlp"}) == {"console", "otlp"}
    assert exporters_for("metrics", {"OTEL_METRICS_EXPORTER": "prometheus"}) == set()  # pull is always on; unknown names ignored


def test_service_name_and_resource_attributes_from_the_environment_win():
    default = build_resource("otel-proxy", "127.0.0.1:8001", {})
    assert default.attributes["service.name"] == "otel-proxy"
    assert default.attributes["service.instance.id"] == "127.0.0.1:8001"
    chosen = build_resource("otel-proxy", "127.0.0.1:8001", {"OTEL_SERVICE_NAME": "proxy-gpu-1", "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=gpu-1,team=ml"})
    assert (chosen.attributes["service.name"], chosen.attributes["service.instance.id"], chosen.attributes["team"]) == ("proxy-gpu-1", "gpu-1", "ml")


def test_each_service_gets_its_own_prometheus_registry():
    first, second = setup_telemetry("a", "1", environ={}), setup_telemetry("b", "2", environ={})
    first.meter("x").create_counter("only.in.first").add(1)
    assert b"only_in_first_total" in first.prometheus_text()
    assert b"only_in_first" not in second.prometheus_text()
    assert b'service_name="a"' in first.prometheus_text()


def test_spans_are_recorded_only_when_something_exports_them():
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    quiet = setup_telemetry("otel-proxy", "1", environ={}).tracer("t")
    unexported = quiet.start_span("request")
    assert not unexported.is_recording()
    assert unexported.get_span_context().is_valid  # real ids still: traceparent and /-/requests carry them
    assert not unexported.get_span_context().trace_flags.sampled

    caller = trace.SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True, trace_flags=trace.TraceFlags(1))
    followed = quiet.start_span("request", context=trace.set_span_in_context(trace.NonRecordingSpan(caller)))
    assert followed.is_recording() and followed.get_span_context().trace_id == caller.trace_id  # the caller sampled it

    exporter = InMemorySpanExporter()
    exported = setup_telemetry("otel-proxy", "1", environ={}, extra_span_processors=[SimpleSpanProcessor(exporter)]).tracer("t")
    exported.start_span("request").end()
    assert [span.name for span in exporter.get_finished_spans()] == ["request"]

    chosen = setup_telemetry("otel-proxy", "1", environ={"OTEL_TRACES_SAMPLER": "parentbased_always_on"}).tracer("t")
    assert chosen.start_span("request").is_recording()  # the user's sampler choice wins
