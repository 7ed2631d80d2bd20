"""Model names as Ollama uses them, for both services: one name per model, whatever the client typed.

Clients type ``llama3.2``; every response echoes that string, while ``/api/ps`` and
``/api/tags`` say ``llama3.2:latest`` (types/model/name.go ``ParseName`` then
``DisplayShortest``). Handlers find the stored model without regard to case
(server/images.go ``getExistingName``), and the scheduler keys runners by the model's blob
(server/sched.go ``schedulerModelKey``), so two names of one manifest (an ``ollama cp``
alias, a tag that points to the same weights) are one model with one runner.

``ModelCatalog`` turns any of those spellings into one name: ``DisplayShortest``, then the
stored spelling from ``/api/tags``, then, for names that share a digest, the shortest of
them (then the first in order). It is refreshed off the hot path (``refresh`` with
``/api/tags``'s body); until it has been, names are only brought to ``DisplayShortest``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MISSING = "!"  # types/model/name.go MissingPart: an empty part between separators


def _cut_last(text: str, separator: str) -> tuple[str, str, bool]:
    """types/model/name.go cutPromised: split at the last separator, an empty side made MISSING."""
    index = text.rfind(separator)
    if index < 0:
        return text, "", False
    return text[:index] or MISSING, text[index + len(separator):] or MISSING, True


def display_shortest(name: str) -> str:
    """``ParseName(name).DisplayShortest()``: the default host and namespace left out, the tag always written."""
    host = namespace = tag = ""
    rest = name
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag, _ = _cut_last(rest, ":")
    rest, model, promised = _cut_last(rest, "/")
    if not promised:
        model = rest
    else:
        rest, namespace, promised = _cut_last(rest, "/")
        if not promised:
            namespace = rest
        else:
            host = rest.split("://", 1)[1] if "://" in rest else rest
    host, namespace, tag = host or DEFAULT_HOST, namespace or DEFAULT_NAMESPACE, tag or DEFAULT_TAG
    if host.lower() != DEFAULT_HOST:
        prefix = f"{host}/{namespace}/"
    elif namespace.lower() != DEFAULT_NAMESPACE:
        prefix = f"{namespace}/"
    else:
        prefix = ""
    return f"{prefix}{model}:{tag}"


class ModelCatalog:
    """One name for each model Ollama holds, from ``/api/tags`` (names and manifest digests)."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # lower-cased DisplayShortest -> the model's one name
        self.known = False  # /api/tags has been read

    def refresh(self, tags: Any) -> None:
        """``/api/tags``'s body. A malformed one changes nothing."""
        listed = tags.get("models") if isinstance(tags, dict) else None
        if not isinstance(listed, list):
            return
        by_digest: dict[str, list[str]] = {}
        names: dict[str, str] = {}
        for entry in listed:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue
            stored = display_shortest(entry["name"])
            names[stored.lower()] = stored
            digest = entry.get("digest")
            if isinstance(digest, str) and digest:
                by_digest.setdefault(digest, []).append(stored)
        for same in by_digest.values():
            one = min(same, key=len)  # the first of the shortest, in /api/tags order
            for stored in same:
                names[stored.lower()] = one
        self._names = names
        self.known = True

    def canonical(self, name: str) -> str:
        """The one name of the model ``name`` asks for (``DisplayShortest`` for a model not listed)."""
        shortest = display_shortest(name)
        return self._names.get(shortest.lower(), shortest)

    def is_listed(self, name: str) -> bool:
        return display_shortest(name).lower() in self._names

    def names(self) -> Iterable[str]:
        return set(self._names.values())
