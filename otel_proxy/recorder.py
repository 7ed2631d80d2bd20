"""A cheaper way into the SDK's metric aggregations, for attribute sets already seen.

The SDK's synchronous record (opentelemetry-sdk 1.45) builds a ``Measurement`` whose
attributes it validates and copies, then, once per reader, copies and hashes them
again to find the aggregation they belong to: about 12 µs a record with one reader and
25 with two (Prometheus and OTLP), and a finished request makes up to 14 records.

A ``Recorder`` wraps one instrument. The first record of an attribute set goes through
the SDK's own path; the Recorder then remembers the aggregations that record landed in
(one per reader) and hands later measurements of the same set straight to them: the
same aggregation objects doing the same arithmetic, so what every reader collects is
identical (tests/proxy/test_recorder.py records one sequence both ways and compares).

Everything else still takes the SDK's path: a value that is not a finite number (or a
negative one, except on an up-down counter), an attribute value that is not a plain
str, int, float or bool, a measurement the exemplar filter would sample, readers with
delta temporality (their aggregations are replaced at each collection), views that
select attributes, an attribute set past the cardinality limit, a disabled meter,
readers added later, the no-op instruments of a disabled SDK, and an SDK whose
internals are not the ones this was written against.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry.context import get_current
from opentelemetry.metrics import UpDownCounter

log = logging.getLogger(__name__)

MAX_BOUND_SETS = 4096
_PLAIN_TYPES = (str, int, float, bool)

# The SDK's internals the shortcut relies on, as opentelemetry-sdk 1.45.2 has them (the version
# requirements/*.txt lock): the attribute hashing of _view_instrument_match and the Measurement
# its consumer takes; tests/stack/test_shortcuts.py fails if an upgrade moves them. Without them every
# record takes the SDK's path.
try:
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
    from opentelemetry.sdk.metrics._internal.measurement import Measurement
except ImportError:  # pragma: no cover - another SDK layout
    _hash_attributes = None  # type: ignore[assignment]
    Measurement = None  # type: ignore[assignment,misc]

_UNBOUND = None  # an attribute set not bound (yet)


class Recorder:
    """``record``/``add`` like the instrument it wraps, cheaper for attribute sets seen before."""

    def __init__(self, instrument: Any, shortcut: bool = True) -> None:
        """``shortcut=False``: every record takes the SDK's own path (to measure what the shortcut saves)."""
        self.instrument = instrument
        self._sdk_call = getattr(instrument, "record", None) or instrument.add
        self._negative_ok = isinstance(instrument, UpDownCounter)
        # attribute set -> (the readers' storages it was bound under, its aggregations or None: the SDK's path)
        self._bound: dict[tuple[Any, ...], tuple[Any, tuple[Any, ...] | None]] = {}
        consumer = getattr(instrument, "_measurement_consumer", None)
        self._consumer = consumer
        self._enabled = (
            shortcut
            and Measurement is not None
            and consumer is not None
            and hasattr(consumer, "_reader_storages")
            and hasattr(consumer, "_sdk_config")
            and hasattr(instrument, "_is_enabled")
        )

    def record(self, value: float, attributes: Mapping[str, Any]) -> None:
        try:  # the attribute set's identity, types included: 1, 1.0 and True are different attributes
            key: tuple[Any, ...] | None = (*attributes.items(), *map(type, attributes.values()))
            entry = self._bound.get(key, _UNBOUND)  # type: ignore[arg-type]
        except (TypeError, AttributeError):  # an unhashable value (a list), or no attributes at all
            key = entry = _UNBOUND
        consumer = self._consumer
        if entry is _UNBOUND or entry[0] is not consumer._reader_storages:
            self._sdk_call(value, attributes)
            if key is not None and self._enabled and math.isfinite(value) and (value >= 0 or self._negative_ok):
                self._bind(key, attributes)
            return
        aggregations = entry[1]
        if (
            aggregations is None
            or not math.isfinite(value)
            or (value < 0 and not self._negative_ok)
            or not self.instrument._is_enabled()
        ):
            self._sdk_call(value, attributes)
            return
        context = get_current()
        now = time_ns()
        if consumer._sdk_config.exemplar_filter.should_sample(value, now, attributes, context):
            self._sdk_call(value, attributes)  # an exemplar keeps the attributes and context the shortcut leaves out
            return
        measurement = Measurement(value, now, self.instrument, context, None)
        for aggregation in aggregations:
            aggregation.aggregate(measurement, False)

    add = record

    def _bind(self, key: tuple[Any, ...], attributes: Mapping[str, Any]) -> None:
        """Find the aggregations the SDK has just put ``attributes`` in, one per reader and view."""
        storages = self._consumer._reader_storages
        if not all(type(value) in _PLAIN_TYPES for value in attributes.values()):
            self._remember(key, (storages, None))
            return
        try:
            hashed = _hash_attributes(dict(attributes))
            aggregations = []
            for storage in storages.values():
                for match in storage._get_or_init_view_instrument_match(self.instrument):
                    if match._reset_on_collect or match._view._attribute_keys is not None:
                        # Delta readers replace their aggregations at each collection; views rewrite the set.
                        self._remember(key, (storages, None))
                        return
                    aggregation = match._attributes_aggregation.get(hashed)
                    if aggregation is None:  # not recorded (a disabled meter) or past the cardinality limit
                        return
                    aggregations.append(aggregation)
        except (AttributeError, TypeError) as exc:  # an SDK this was not written against
            log.debug("metric records take the SDK's path: %s", exc)
            self._enabled = False
            return
        self._remember(key, (storages, tuple(aggregations)))

    def _remember(self, key: tuple[Any, ...], entry: tuple[Any, tuple[Any, ...] | None]) -> None:
        if len(self._bound) >= MAX_BOUND_SETS:
            self._bound.clear()
        self._bound[key] = entry
