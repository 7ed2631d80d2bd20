"""Which models Ollama holds in memory and GPU memory, from GET /api/ps (and /api/version, /api/tags).

Models are labelled by their one name, by the rule both services share (ollama_otel_stack/ollama_ps.py),
so the page joins residency with requests."""

from __future__ import annotations

from typing import Any

import httpx

from hw_collector import instruments as m
from hw_collector.sources import Reading
from ollama_otel_stack.go_time import unix_seconds
from ollama_otel_stack.ollama_ps import ResidentModels


def readings_of(entries: list[dict[str, Any]]) -> list[Reading]:
    """/api/ps's entries (named by ``ResidentModels.take_ps``) as readings."""
    readings = [Reading(m.LOADED_MODELS, len(entries), {})]
    for model in entries:
        attributes: dict[str, str | int] = {"model": model["name"]}
        if isinstance(model.get("size"), int):
            readings.append(Reading(m.LOADED_MODEL_SIZE, model["size"], attributes))
        if isinstance(model.get("size_vram"), int):
            readings.append(Reading(m.LOADED_MODEL_VRAM, model["size_vram"], attributes))
        expiry = unix_seconds(model.get("expires_at"))
        if expiry is not None:
            readings.append(Reading(m.LOADED_MODEL_EXPIRY, expiry, attributes))
    return readings


class OllamaSource:
    """Always present: when Ollama does not answer, ``ollama.up`` says 0 and no model series remain."""

    name = "ollama"

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self._base = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout_s, trust_env=False)
        self._version = ""
        self._resident = ResidentModels()

    def available(self) -> str | None:
        return None

    def read(self) -> list[Reading]:
        try:
            if self._resident.tags_due():
                self._resident.take_tags(self._get("/api/tags"))
            answer = self._client.get(self._base + "/api/ps")
            answer.raise_for_status()
            entries = self._resident.take_ps(answer.json()) or []
            if not self._version:
                self._version = str(self._client.get(self._base + "/api/version").json().get("version", ""))
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            self._version = ""
            raise RuntimeError(f"Ollama at {self._base} did not answer /api/ps: {exc}") from exc
        return [Reading(m.OLLAMA_UP, 1, {"ollama.version": self._version}), *readings_of(entries)]

    def _get(self, path: str) -> Any:
        """A body that cannot be read is None: the names stay as they were (DisplayShortest at least)."""
        try:
            return self._client.get(self._base + path).json()
        except (httpx.HTTPError, ValueError):
            return None

    def close(self) -> None:
        self._client.close()
