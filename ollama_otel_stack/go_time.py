"""Times as Ollama's Go server writes them (encoding/json of a time.Time: RFC 3339 with nanoseconds)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_FRACTION = re.compile(r"(\.\d{6})\d+")


def unix_seconds(rfc3339: Any) -> float | None:
    """Unix seconds, or None for what is not a time and for Go's zero time (``0001-01-01T00:00:00Z``: not set,
    as /api/ps shows ``expires_at`` of a runner that has not yet gone idle). Go writes nanoseconds; Python 3.11
    reads at most microseconds."""
    if not isinstance(rfc3339, str):
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", rfc3339.replace("Z", "+00:00")))
    except ValueError:
        return None
    return None if parsed.year == 1 else parsed.timestamp()


_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_seconds(text: str) -> float | None:
    """Seconds from a Go ``time.Duration`` as its String() writes it (``1.503217894s``, ``2m3.5s``, ``512µs``, ``0s``:
    time.ParseDuration's grammar); None for anything else."""
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.removeprefix("+"))
    if body == "0":
        return 0.0
    parts = _DURATION.findall(body)
    if not parts or "".join(number + unit for number, unit in parts) != body:
        return None
    return sign * sum(float(number) * _UNIT_S[unit] for number, unit in parts)
