"""Measurement sources: each says whether it is available here and reads itself now.

A source returns ``Reading`` tuples named after the catalogue's instruments. The sampler
never asks a source for a quantity it cannot measure, and a source that has nothing to
say returns nothing: no zeros, no estimates.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Protocol


class Reading(NamedTuple):
    metric: str
    value: float
    attributes: dict[str, str | int]


class Source(Protocol):
    name: str

    def available(self) -> str | None:
        """None if the source works on this machine, else why not (logged once)."""

    def read(self) -> list[Reading]:
        """The current values; raises if the source failed."""

    def close(self) -> None: ...


class EnergyIntegrator:
    """Energy from power samples (trapezoids), for sources that report watts but no energy counter."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}
        self._joules: dict[str, float] = {}

    def add(self, key: str, watts: float, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        previous = self._last.get(key)
        total = self._joules.get(key, 0.0)
        if previous is not None:
            then, previous_watts = previous
            total += (watts + previous_watts) / 2 * (now - then)
        self._last[key] = (now, watts)
        self._joules[key] = total
        return total
