"""Label values a caller chooses, bounded so that no caller can grow the metrics."""

from __future__ import annotations

import threading

OTHER = "other"  # a name past the bound
UNKNOWN_MODEL = "unknown"  # a generation whose body named no model
# http.request.method as the HTTP semantic conventions bound it: the known methods, the rest "_OTHER".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER_METHOD = "_OTHER"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


class BoundedNames:
    """The first ``limit`` names seen keep a label of their own; later ones share ``other``.

    ``empty`` labels a request that names nothing; ``max_length``, where given, cuts a name
    (its surrounding blanks first) before it is counted.
    """

    def __init__(self, limit: int, empty: str = OTHER, max_length: int | None = None) -> None:
        self._limit = limit
        self._empty = empty
        self._max_length = max_length
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def label(self, name: str | None, admit: bool = True) -> str:
        """The label for ``name``; a name not yet seen takes a place only if ``admit``."""
        name = name or ""
        if self._max_length is not None:
            name = name.strip()[: self._max_length]
        if not name:
            return self._empty
        if name in self._seen:
            return name
        if not admit:
            return OTHER
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(name)
                return name
        return OTHER
