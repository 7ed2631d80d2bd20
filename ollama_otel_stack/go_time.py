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
