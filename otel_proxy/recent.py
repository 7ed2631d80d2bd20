"""The bounded log of recently finished requests served at ``/-/requests``."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class RecentRequests:
    """The last ``capacity`` finished requests, newest first. Never holds prompt or response text."""

    def __init__(self, capacity: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def newest_first(self, limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self._entries)
        entries.reverse()
        return entries if limit is None else entries[:limit]
