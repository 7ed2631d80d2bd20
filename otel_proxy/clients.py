"""Who is calling: the ``client`` label of a request, and the optional API keys that admit it.

The label, in order of precedence:
1. with API keys configured (``--api-keys``), the name of the key the request presented;
2. an ``X-Client-Name`` header, among the first ``--max-clients`` (50) names seen, later ones
   ``other`` (as model names are bounded);
3. the family of its ``User-Agent``, from the fixed list ``FAMILIES`` (docs/metrics.md).

Keys: ``Authorization: Bearer <key>`` (what the ollama, openai and litellm clients send) or
``x-api-key: <key>`` (the anthropic client). Each presented key is compared with every
configured one in constant time (``hmac.compare_digest``), so neither which key matched nor
how much of it did shows in the time taken. Keys are never logged; the header carrying one
is removed before the request goes to Ollama.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from otel_proxy.labels import OTHER

log = logging.getLogger(__name__)

OTHER_CLIENT = OTHER
MAX_NAME_LENGTH = 64  # characters of an X-Client-Name kept
# (family, pattern matched against the User-Agent, first match wins): the official SDKs first.
FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (family, re.compile(pattern, re.I))
    for family, pattern in (
        ("ollama-python", r"^ollama-python/"),
        ("ollama-js", r"^ollama-js/"),
        ("openai-python", r"^OpenAI/Python"),
        ("openai-node", r"^OpenAI/JS"),
        ("anthropic-python", r"^Anthropic/Python"),
        ("anthropic-node", r"^Anthropic/JS"),
        ("open-webui", r"open-webui|openwebui"),
        ("curl", r"^curl/"),
        ("python-httpx", r"^python-httpx/"),
        ("python-requests", r"^python-requests/"),
        ("go-http", r"^Go-http-client/"),
        ("browser", r"^Mozilla/"),
    )
)
CLIENT_FAMILIES = (*(family for family, _ in FAMILIES), OTHER_CLIENT)


def family_of(user_agent: str) -> str:
    for family, pattern in FAMILIES:
        if pattern.search(user_agent):
            return family
    return OTHER_CLIENT


class KeyFileError(ValueError):
    """The --api-keys file cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class ApiKeys:
    """``name: key`` pairs, kept as SHA-256 digests; ``check`` answers which name a presented key belongs to, or None."""

    pairs: tuple[tuple[str, bytes], ...]  # (name, digest of the key)

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        try:
            text = path.read_text()
        except OSError as exc:
            raise KeyFileError(f"--api-keys {path}: cannot be read ({exc.strerror})") from exc
        return cls.load_text(text, str(path))

    @classmethod
    def load_text(cls, text: str, path: str = "keys") -> ApiKeys:
        pairs: list[tuple[str, bytes]] = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, separator, key = line.partition(":")
            name, key = name.strip(), key.strip()
            if not separator or not name or not key:
                raise KeyFileError(f"--api-keys {path}, line {number}: expected `name: key`")
            if any(existing == name for existing, _ in pairs):
                raise KeyFileError(f"--api-keys {path}, line {number}: the name {name!r} is used twice")
            pairs.append((name, hashlib.sha256(key.encode()).digest()))
        if not pairs:
            raise KeyFileError(f"--api-keys {path}: no `name: key` line")
        return cls(tuple(pairs))

    def check(self, presented: bytes) -> str | None:
        """The name of the key ``presented`` is: its digest compared with every key's, whatever matches
        (digests of one length: neither the key's length nor how much of it matches shows in the time)."""
        digest = hashlib.sha256(presented).digest()
        found = None
        for name, key in self.pairs:
            if hmac.compare_digest(digest, key) and found is None:
                found = name
        return found


def presented_key(headers: list[tuple[bytes, bytes]]) -> tuple[bytes | None, str | None]:
    """The key a request presents, and a problem with how it presents it (two of them, a malformed one)."""
    found: list[bytes] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                return None, "the Authorization header is not `Bearer <key>`"
            found.append(token.strip())
        elif lowered == b"x-api-key":
            found.append(value.strip())
    if len(found) > 1 and len(set(found)) > 1:
        return None, "the request presents more than one key"
    if len(found) > 1 and sum(1 for name, _ in headers if name.lower() == b"authorization") > 1:
        return None, "the request has more than one Authorization header"
    return (found[0] if found else None), None


KEY_HEADERS = frozenset({b"authorization", b"x-api-key"})


def carries_a_key(name: bytes) -> bool:
    """A header that holds or may be taken for a credential: the key headers and their underscore
    variants (``x_api_key``), which some servers read as the same header. Never forwarded when keys are
    configured (nginx drops headers with underscores by default for the same reason)."""
    return name.lower().replace(b"_", b"-") in KEY_HEADERS


class KeyFile:
    """The --api-keys file, read again on SIGHUP and whenever it changes.

    Each request checks against the keys in force when it arrived; a request in flight is never
    touched. A file that no longer reads as keys keeps the old ones in force, and the log says why.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys = ApiKeys.load(path)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def check(self, presented: bytes) -> str | None:
        return self.keys.check(presented)

    def reload_if_changed(self) -> bool:
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return self.reload()

    def reload(self) -> bool:
        """Read the file again; True when its keys are now the ones in force."""
        try:
            keys = ApiKeys.load(self.path)
        except KeyFileError as exc:
            log.error("%s; the %d keys read before stay in force", exc, len(self.keys.pairs))
            return False
        self.keys = keys
        log.info("--api-keys %s read again: %d keys (%s)", self.path, len(keys.pairs), ", ".join(name for name, _ in keys.pairs))
        return True
