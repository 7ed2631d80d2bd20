"""Which models Ollama holds in memory and GPU memory, from GET /api/ps (and /api/version, /api/tags).

Models are labelled by their one name (ollama_otel_stack/model_names.py), as the proxy labels
them, so the page joins residency with requests: /api/tags is read every TAGS_EVERY reads and
whenever /api/ps names a model it does not list."""

from __future__ import annotations

import httpx

from hw_collector import instruments as m
from ollama_otel_stack.go_time import unix_seconds
from ollama_otel_stack.model_names import ModelCatalog
from hw_collector.sources import Reading

TAGS_EVERY = 6


def parse_ps(body: dict, catalog: ModelCatalog | None = None) -> list[Reading]:
    models = body.get("models") or []
    readings = [Reading(m.LOADED_MODELS, len(models), {})]
    for model in models:
        name = model.get("name") or model.get("model") or "unknown"
        attributes: dict[str, str | int] = {"model": catalog.canonical(name) if catalog is not None and name != "unknown" else name}
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
        self._catalog = ModelCatalog()
        self._reads = 0

    def available(self) -> str | None:
        return None

    def read(self) -> list[Reading]:
        try:
            answer = self._client.get(self._base + "/api/ps")
            answer.raise_for_status()
            body = answer.json()
            if not self._version:
                self._version = str(self._client.get(self._base + "/api/version").json().get("version", ""))
            listed = [entry.get("name") or entry.get("model") or "" for entry in body.get("models") or [] if isinstance(entry, dict)]
            if self._reads % TAGS_EVERY == 0 or not all(self._catalog.is_listed(name) for name in listed):
                self._refresh_names()
            self._reads += 1
        except (httpx.HTTPError, ValueError) as exc:
            self._version = ""
            raise RuntimeError(f"Ollama at {self._base} did not answer /api/ps: {exc}") from exc
        return [Reading(m.OLLAMA_UP, 1, {"ollama.version": self._version}), *parse_ps(body, self._catalog)]

    def _refresh_names(self) -> None:
        """/api/tags into the catalogue; when it cannot be read the names stay as they were (DisplayShortest at least)."""
        try:
            self._catalog.refresh(self._client.get(self._base + "/api/tags").json())
        except (httpx.HTTPError, ValueError):
            pass

    def close(self) -> None:
        self._client.close()
