"""The bounded log of recently finished requests served at ``/-/requests``."""

from __future__ import annotations

import threading
from collections import deque

from otel_proxy.finished import FinishedRequest


class RecentRequests:
    """The last ``capacity`` finished requests, newest first. Never holds prompt or response text."""

    def __init__(self, capacity: int) -> None:
        self._entries: deque[FinishedRequest] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, entry: FinishedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def newest_first(self, limit: int | None = None) -> list[FinishedRequest]:
        with self._lock:
            entries = list(self._entries)
        entries.reverse()
        return entries if limit is None else entries[:limit]
