"""What each Ollama release reports, where the services and the page must tell releases apart."""

from __future__ import annotations

import re

CACHE_REPORTED_SINCE = (0, 33, 3)  # the first release with PR #17943's cached-token fields (docs/metrics.md, "The prompt cache")


def release(version: str | None) -> tuple[int, int, int] | None:
    """``0.33.3`` (or ``0.33.3-rc1``) as numbers; None for what is not a version."""
    numbers = re.findall(r"\d+", (version or "").split("-")[0])[:3]
    return (int(numbers[0]), int(numbers[1]), int(numbers[2])) if len(numbers) == 3 else None


def reports_cache(version: str | None) -> bool:
    """Whether an Ollama of this version reports its prompt cache (an unknown version: not known to)."""
    numbers = release(version)
    return numbers is not None and numbers >= CACHE_REPORTED_SINCE
