"""The Recorder's shortcut into the SDK's aggregations collects exactly what the SDK's own path does.

Each test records one sequence twice, through plain SDK instruments and through
Recorders on a second, identical MeterProvider, and compares everything the readers
collect (timestamps aside).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import NoOpHistogram, NoOpMeterProvider, NoOpUpDownCounter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics._internal.exemplar import AlwaysOnExemplarFilter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_proxy.recorder import Recorder

GEN = {"gen_ai.provider.name": "ollama", "gen_ai.operation.name": "chat", "gen_ai.request.model": "llama3.2:1b"}
HTTP = {"http.route": "/api/chat", "http.request.method": "POST", "http.response.status_code": 200}

Sequence = list[tuple[str, float, Any]]

SEQUENCE: Sequence = [
    *[("duration", 0.001 * i, HTTP) for i in range(1, 40)],
    *[("tokens", i, GEN) for i in range(1, 30)],
    ("duration", 7.5, {"http.request.method": "POST", "http.route": "/api/chat", "http.response.status_code": 200}),
    ("duration", 0.3, {**HTTP, "error.type": "upstream_closed"}),
    ("duration", 0.2, {**HTTP, "http.response.status_code": 404}),
    # Equal but different attributes: the SDK keeps them apart, so must the shortcut.
    *[("tokens", 2, {"code": value}) for value in (1, True, 1.0, 1, True, 1.0)],
    ("duration", -1.0, HTTP),  # dropped by histograms and counters (with a warning)
    ("tokens", -3, GEN),
    ("duration", math.nan, HTTP),
    ("duration", math.inf, HTTP),
    ("tokens", 1, {"list": [1, 2]}),  # a sequence value, made a tuple by the SDK
    ("tokens", 1, {"list": [1, 2]}),
    ("tokens", 5, None),
    ("tokens", 5, {}),
    ("tokens", 5, {}),
    *[("active", delta, {"http.request.method": "POST"}) for delta in (1, 1, -1, 1, -1, -1, -1)],
    *[("duration", 0.5 + i, {**HTTP, "http.route": f"/r{i % 7}"}) for i in range(30)],
]


def providers(**provider_options: Any) -> tuple[Callable[[], dict], Callable[[], dict], dict[str, Any], dict[str, Recorder]]:
    """Two identical providers with two readers each: one recorded plainly, one through Recorders."""
    reader_options = provider_options.pop("reader_options", {})
    sides = []
    for _ in range(2):
        readers = [InMemoryMetricReader(**reader_options) for _ in range(2)]
        provider = MeterProvider(metric_readers=readers, **provider_options)
        meter = provider.get_meter("test")
        instruments = {
            "duration": meter.create_histogram("duration", unit="s", explicit_bucket_boundaries_advisory=(0.01, 0.1, 1, 10)),
            "tokens": meter.create_counter("tokens"),
            "active": meter.create_up_down_counter("active"),
        }
        sides.append((readers, instruments))
    (plain_readers, plain), (fast_readers, fast) = sides
    recorders = {name: Recorder(instrument) for name, instrument in fast.items()}
    return (lambda: collected(plain_readers)), (lambda: collected(fast_readers)), plain, recorders


def collected(readers: list[InMemoryMetricReader]) -> list[dict]:
    out = []
    for reader in readers:
        points = {}
        data = reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        fields = {
                            name: getattr(point, name)
                            for name in ("value", "count", "sum", "bucket_counts", "explicit_bounds", "min", "max")
                            if hasattr(point, name)
                        }
                        exemplars = sorted((e.value, str(e.filtered_attributes), e.trace_id) for e in point.exemplars)
                        key = (metric.name, tuple((k, type(v).__name__, v) for k, v in sorted(point.attributes.items())))
                        points[key] = {**fields, "exemplars": exemplars}
        out.append(points)
    return out


def play(sequence: Sequence, plain: dict[str, Any], recorders: dict[str, Recorder]) -> None:
    """The sequence on each side in turn, from the same random state (counters' exemplar reservoirs sample at random)."""
    state = random.getstate()
    for side in (plain, recorders):
        random.setstate(state)
        for name, value, attributes in sequence:
            getattr(side[name], "record" if name == "duration" else "add")(value, attributes)


def sdk_calls(recorder: Recorder) -> list[Any]:
    """Counts the records that take the SDK's own path."""
    calls: list[Any] = []
    sdk_call = recorder._sdk_call

    def counted(value: float, attributes: Any) -> None:
        calls.append(value)
        sdk_call(value, attributes)

    recorder._sdk_call = counted
    return calls


def test_the_shortcut_collects_what_the_sdk_collects_and_is_taken():
    plain_data, fast_data, plain, recorders = providers()
    through_sdk = sdk_calls(recorders["duration"])
    play(SEQUENCE, plain, recorders)
    assert fast_data() == plain_data()
    # Every set's first record takes the SDK's path, and so do the values it drops; the 39
    # HTTP records and the repeated /rN routes are the shortcut's.
    assert len(through_sdk) < 20
    assert 0.001 * 39 not in through_sdk


def test_records_after_a_collection_keep_adding_up():
    plain_data, fast_data, plain, recorders = providers()
    play(SEQUENCE[:50], plain, recorders)
    assert fast_data() == plain_data()
    play(SEQUENCE[50:], plain, recorders)
    play(SEQUENCE, plain, recorders)
    assert fast_data() == plain_data()


def test_delta_temporality_takes_the_sdks_path_and_stays_equal():
    delta = {Histogram: AggregationTemporality.DELTA, Counter: AggregationTemporality.DELTA, UpDownCounter: AggregationTemporality.DELTA}
    plain_data, fast_data, plain, recorders = providers(reader_options={"preferred_temporality": delta})
    for _ in range(3):
        play(SEQUENCE, plain, recorders)
        assert fast_data() == plain_data()


def test_views_that_select_attributes_and_the_cardinality_limit():
    views = [View(instrument_name="duration", attribute_keys={"http.route"}), View(instrument_name="tokens", aggregation_cardinality_limit=3)]
    plain_data, fast_data, plain, recorders = providers(views=views)
    play(SEQUENCE * 2, plain, recorders)
    assert fast_data() == plain_data()


def test_exemplars_are_sampled_as_the_sdk_samples_them():
    plain_data, fast_data, plain, recorders = providers(exemplar_filter=AlwaysOnExemplarFilter())
    span = NonRecordingSpan(SpanContext(trace_id=7, span_id=9, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    with trace.use_span(span):
        play(SEQUENCE, plain, recorders)
    plain_points = plain_data()
    assert any(point["exemplars"] for point in plain_points[0].values())
    assert fast_data() == plain_points


def test_the_disabled_sdks_instruments_are_recorded_as_they_are():
    """With the SDK disabled (OTEL_SDK_DISABLED: no-op instruments, no SDK internals) every call reaches the
    instrument itself, each with its value and attributes, none dropped or bound."""
    calls: list[tuple[str, float, dict]] = []

    class SpyHistogram(NoOpHistogram):
        def record(self, amount, attributes=None, context=None):
            calls.append(("record", amount, dict(attributes)))

    class SpyCounter(NoOpUpDownCounter):
        def add(self, amount, attributes=None, context=None):
            calls.append(("add", amount, dict(attributes)))

    meter = NoOpMeterProvider().get_meter("test")
    assert type(meter.create_histogram("duration")) is NoOpHistogram  # what the disabled SDK hands out
    recorder = Recorder(SpyHistogram("duration"))
    for value in (0.5, 0.25, 0.5):
        recorder.record(value, HTTP)
    counter = Recorder(SpyCounter("active"))
    counter.add(-1, HTTP)
    assert calls == [("record", 0.5, HTTP), ("record", 0.25, HTTP), ("record", 0.5, HTTP), ("add", -1, HTTP)]
    assert recorder._bound == {} and counter._bound == {}
