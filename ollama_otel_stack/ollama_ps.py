"""How both services read which models Ollama holds: ``/api/ps``, named by ``/api/tags``.

One rule, whoever reads (the proxy's poller, otel_proxy/ps_poller.py, and the collector's source,
hw_collector/sources/ollama_ps.py): ``/api/tags`` is read first, then every ``TAGS_EVERY`` reads of
``/api/ps``, and at once whenever ``/api/ps`` names a model it does not list (one just pulled or
copied). Every model ``/api/ps`` lists is then called by its one name (ollama_otel_stack/model_names.py),
so the page joins the two services' series. The reading itself (sync or async) is the caller's.
"""

from __future__ import annotations

from typing import Any

from ollama_otel_stack.model_names import ModelCatalog

TAGS_EVERY = 6  # with a 5 s interval: /api/tags every 30 s


def listed_name(entry: dict[str, Any]) -> str:
    """The name an /api/ps entry gives its model (``name``, else ``model``)."""
    return str(entry.get("name") or entry.get("model") or "")


class ResidentModels:
    """The state of the rule: the catalogue of names, and whether ``/api/tags`` is due."""

    def __init__(self) -> None:
        self.catalog = ModelCatalog()
        self._reads = 0
        self._stale = True  # nothing read yet

    def tags_due(self) -> bool:
        """Whether ``/api/tags`` should be read before the next ``/api/ps``."""
        return self._stale or self._reads % TAGS_EVERY == 0

    def take_tags(self, body: Any) -> None:
        """``/api/tags``'s body (a malformed one changes no name)."""
        self.catalog.refresh(body)
        self._stale = False

    def take_ps(self, body: Any) -> list[dict[str, Any]] | None:
        """``/api/ps``'s body: its entries, each ``name`` the model's one name; None for a body that lists nothing readable."""
        listed = body.get("models") if isinstance(body, dict) else None
        if not isinstance(listed, list):
            return None
        self._reads += 1
        entries = [entry for entry in listed if isinstance(entry, dict)]
        self._stale = any(not self.catalog.is_listed(listed_name(entry)) for entry in entries)
        return [{**entry, "name": self.catalog.canonical(listed_name(entry)) if listed_name(entry) else "unknown"} for entry in entries]
