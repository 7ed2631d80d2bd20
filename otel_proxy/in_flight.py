"""The requests the proxy is passing on to Ollama now, served at ``/-/in-flight``: who sent each, to which model and
route, since when, and whether its answer has begun. The page joins them with what Ollama's log says each runner's
slot is doing (the collector's ``/-/live``). Kept by the bookkeeper, in order with the requests' ends; never holds
prompt or response text."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class InFlightRequest:
    started: float  # unix seconds it arrived
    route: str
    model: str | None  # the model's one name, as Ollama runs it
    client: str  # as /-/requests and the ollama_client label name it
    answering: bool = False  # its answer's first part has passed

    def as_json(self, now: float) -> dict[str, Any]:
        return {"started": self.started, "age_s": round(now - self.started, 3), "route": self.route, "model": self.model, "client": self.client,
                "phase": "answering" if self.answering else "waiting"}


class InFlight:
    """The generation requests on their way now, by the observer's key."""

    def __init__(self) -> None:
        self._entries: dict[int, InFlightRequest] = {}
        self._lock = threading.Lock()

    def add(self, key: int, entry: InFlightRequest) -> None:
        with self._lock:
            self._entries[key] = entry

    def answering(self, key: int) -> None:
        with self._lock:
            if (entry := self._entries.get(key)) is not None:
                entry.answering = True

    def remove(self, key: int) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def oldest_first(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            entries = sorted(self._entries.values(), key=lambda entry: entry.started)
        return [entry.as_json(now) for entry in entries]
