"""The SDK's metrics as a Prometheus text page, each series' text kept while its value stands.

``opentelemetry-exporter-prometheus`` turns every data point into prometheus_client objects
on every scrape, and ``generate_latest`` turns those into text again: at 100 models (21,000
series) that is 90 % of a scrape's 400 ms of CPU on these cores, and the streams wait for it
(docs/benchmarks.md, "Scrapes and streams"). ``PageReader`` renders the same page from the
SDK's collection itself. A series' label text is built once; a histogram's lines are built
again only when its count, sum or buckets moved since the last scrape, and a counter's or
gauge's line only when its value did.

The page is byte for byte the exporter's, as configured in ollama_otel_stack/telemetry.py
(``PrometheusMetricReader(scope_info_enabled=False)``: no scope labels, no prefix, no
resource labels, ``target_info`` first): the names, units and label keys through the
exporter's own ``_mapping``, and the escaping and number format through prometheus_client's
own functions. tests/stack/test_prometheus_page.py renders both from one MeterProvider over
every kind of point the exporter handles and fails where a byte differs. An exponential
histogram, which the exporter cannot render at all, is left out with one warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import chain
from json import dumps
from typing import Any

from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_attribute, sanitize_full_name
from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter, ObservableGauge, ObservableUpDownCounter, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, Metric, MetricReader, MetricsData, Sum
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from prometheus_client.openmetrics.exposition import ALLOWUTF8, _escape, escape_label_name, escape_metric_name
from prometheus_client.utils import floatToGoString
from prometheus_client.validation import _validate_metric_name

log = logging.getLogger(__name__)

_CUMULATIVE = AggregationTemporality.CUMULATIVE
TARGET_INFO = ("target", "Target metadata")  # the exporter's _TARGET_INFO_NAME and _TARGET_INFO_DESCRIPTION


def _label_value(value: Any) -> str:
    """The exporter's ``_check_value``: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else dumps(value, default=str)


def _help(name: str, documentation: str, kind: str) -> str:
    """generate_latest's two comment lines of a family."""
    documentation = documentation.replace("\\", r"\\").replace("\n", r"\n")
    name = escape_metric_name(name)
    return f"# HELP {name} {documentation}\n# TYPE {name} {kind}\n"


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    """generate_latest's label text: sorted by name, values escaped; empty without labels."""
    text = ",".join(f'{escape_label_name(k)}="{_escape(v, ALLOWUTF8, False)}"' for k, v in sorted(pairs))
    return "{" + text + "}" if text else ""


class _Family:
    """One family of the page, as prometheus_client's family classes name it (a unit appended, ``_total`` moved)."""

    __slots__ = ("sample", "labelnames", "head", "series")

    def __init__(self, name: str, documentation: str, unit: str, kind: str, labelnames: tuple[str, ...]) -> None:
        if kind == "counter" and name.endswith("_total"):  # CounterMetricFamily
            name = name[:-6]
        if unit and not name.endswith("_" + unit):  # Metric.__init__
            name += "_" + unit
        _validate_metric_name(name)
        self.sample = name + "_total" if kind == "counter" else name
        self.labelnames = labelnames  # the first metric's: a second one merged into the family is zipped with them, as the exporter does
        self.head = _help(self.sample, documentation, kind).encode()
        self.series: list[bytes] = []


class _Series:
    """The text of one series, and what it was rendered from."""

    __slots__ = ("prefixes", "state", "text")

    def __init__(self, prefixes: list[str]) -> None:
        self.prefixes = prefixes
        self.state: Any = None  # never equal to a value: the first render writes the text
        self.text = b""


class PageReader(MetricReader):
    """A pull reader whose ``render`` gives the OpenTelemetry part of the /metrics page."""

    def __init__(self) -> None:
        super().__init__(
            preferred_temporality={
                kind: _CUMULATIVE
                for kind in (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
            }
        )
        self._received: MetricsData | None = None
        self._target_info: bytes | None = None
        self._names: dict[str, str] = {}
        self._keys: dict[str, str] = {}
        self._series: dict[tuple, _Series] = {}
        self._warned: set[str] = set()

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._received = metrics_data

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass

    def render(self) -> bytes:
        """Collect from the SDK and write the page (UTF-8, as generate_latest); nothing when the SDK holds no metric yet."""
        self._received = None
        self.collect()
        data, self._received = self._received, None
        if data is None:
            return b""
        if self._target_info is None:  # from the first collection, as the exporter keeps it
            attributes: dict[str, Any] = {}
            for resource_metrics in data.resource_metrics:
                attributes = {**attributes, **resource_metrics.resource.attributes}
            labels = {sanitize_attribute(key): _label_value(value) for key, value in attributes.items()}
            name, documentation = TARGET_INFO
            self._target_info = (_help(name + "_info", documentation, "gauge") + f"{name}_info{_labels(labels.items())} 1.0\n").encode()
        families: dict[tuple, _Family] = {}
        seen: dict[tuple, _Series] = {}
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    self._add(metric, families, seen)
        self._series = seen  # series gone from the SDK are forgotten
        return self._target_info + b"".join(chain.from_iterable([family.head, *family.series] for family in families.values()))

    def _add(self, metric: Metric, families: dict[tuple, _Family], seen: dict[tuple, _Series]) -> None:
        data = metric.data
        if isinstance(data, Sum):
            kind = "counter" if data.is_monotonic or data.aggregation_temporality != _CUMULATIVE else "gauge"
        elif isinstance(data, Gauge):
            kind = "gauge"
        elif isinstance(data, HistogramData):
            kind = "histogram"
        else:
            if metric.name not in self._warned:
                self._warned.add(metric.name)
                log.warning("%s: a %s cannot be written on the Prometheus page; left out", metric.name, type(data).__name__)
            return
        name = self._names.get(metric.name)
        if name is None:
            name = self._names[metric.name] = sanitize_full_name(metric.name)
        keys = self._keys
        attribute_keys: set[str] = set()
        for point in data.data_points:
            attribute_keys.update(point.attributes.keys())
        for key in attribute_keys:
            if key not in keys:
                keys[key] = sanitize_attribute(key)
        labelnames = tuple(sorted({keys[key] for key in attribute_keys}))
        identity = (name, metric.description or "", map_unit(metric.unit or ""), kind)
        family = families.get(identity)
        if family is None:
            family = families[identity] = _Family(*identity, labelnames)
        for point in data.data_points:
            attributes = point.attributes
            series_key = (identity, family.labelnames, labelnames, tuple(attributes.items()))
            series = self._series.get(series_key) or self._new_series(family, labelnames, attributes, kind == "histogram", point)
            seen[series_key] = series
            if kind == "histogram":
                state = (point.sum, point.bucket_counts)
                if series.state != state:  # the SDK's bucket counts are a fresh tuple each collection
                    series.state = state
                    series.text = self._histogram_text(series.prefixes, point)
            elif series.state != point.value:
                series.state = point.value
                series.text = f"{series.prefixes[0]} {floatToGoString(point.value)}\n".encode()
            family.series.append(series.text)

    def _new_series(self, family: _Family, labelnames: tuple[str, ...], attributes: Any, histogram: bool, point: Any) -> _Series:
        keys = self._keys
        row: dict[str, str] = {}
        for key, value in attributes.items():
            row[keys[key]] = _label_value(value)
        values = [row.get(label, "") for label in labelnames]
        pairs = list(zip(family.labelnames, values))
        if not histogram:
            return _Series([family.sample + _labels(pairs)])
        bounds = [f"{bound}" for bound in point.explicit_bounds] + ["+Inf"]
        prefixes = [f"{family.sample}_bucket{_labels({**dict(pairs), 'le': bound}.items())}" for bound in bounds]  # an attribute "le" loses
        if float(bounds[0]) >= 0:  # HistogramMetricFamily writes no count and sum when a bucket is negative
            prefixes += [f"{family.sample}_count{_labels(pairs)}", f"{family.sample}_sum{_labels(pairs)}"]
        return _Series(prefixes)

    @staticmethod
    def _histogram_text(prefixes: list[str], point: Any) -> bytes:
        lines = []
        total = 0
        for prefix, count in zip(prefixes, point.bucket_counts):
            total += count
            lines.append(f"{prefix} {floatToGoString(total)}\n")
        if len(prefixes) > len(point.bucket_counts):
            lines.append(f"{prefixes[-2]} {floatToGoString(total)}\n{prefixes[-1]} {floatToGoString(point.sum)}\n")
        return "".join(lines).encode()
