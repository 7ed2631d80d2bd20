"""Which models Ollama holds in memory and GPU memory, from GET /api/ps (and /api/version)."""

from __future__ import annotations

import re
from datetime import datetime

import httpx

from hw_collector import instruments as m
from hw_collector.sources import Reading

_FRACTION = re.compile(r"(\.\d{6})\d+")


def unix_seconds(rfc3339: str) -> float | None:
    """Go writes nanoseconds; Python 3.11 reads at most microseconds."""
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", rfc3339)).timestamp()
    except ValueError:
        return None


def parse_ps(body: dict) -> list[Reading]:
    models = body.get("models") or []
    readings = [Reading(m.LOADED_MODELS, len(models), {})]
    for model in models:
        attributes: dict[str, str | int] = {"model": model.get("name") or model.get("model") or "unknown"}
        if isinstance(model.get("size"), int):
            readings.append(Reading(m.LOADED_MODEL_SIZE, model["size"], attributes))
        if isinstance(model.get("size_vram"), int):
            readings.append(Reading(m.LOADED_MODEL_VRAM, model["size_vram"], attributes))
        expiry = unix_seconds(model.get("expires_at") or "")
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

    def available(self) -> str | None:
        return None

    def read(self) -> list[Reading]:
        try:
            answer = self._client.get(self._base + "/api/ps")
            answer.raise_for_status()
            body = answer.json()
            if not self._version:
                self._version = str(self._client.get(self._base + "/api/version").json().get("version", ""))
        except (httpx.HTTPError, ValueError) as exc:
            self._version = ""
            raise RuntimeError(f"Ollama at {self._base} did not answer /api/ps: {exc}") from exc
        return [Reading(m.OLLAMA_UP, 1, {"ollama.version": self._version}), *parse_ps(body)]

    def close(self) -> None:
        self._client.close()
