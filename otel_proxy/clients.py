"""Who is calling: the ``client`` label of a request, and the optional API keys that admit it.

The label, in order of precedence:
1. with API keys configured (``--api-keys``), the name of the key the request presented;
2. an ``X-Client-Name`` header, among the first ``--max-clients`` (50) names seen, later ones
   ``other`` (as model names are bounded);
3. the family of its ``User-Agent``, from the fixed list ``FAMILIES`` (docs/metrics.md), or of a header only one
   agent sends (``HEADER_FAMILIES``) where the User-Agent names a shared SDK or nothing.

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
# (family, pattern matched against the User-Agent, first match wins), each pattern the string that client's own source
# builds (docs/metrics.md names the file). Agents and apps first, then the SDKs and HTTP libraries they may be built on.
FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (family, re.compile(pattern, re.I))
    for family, pattern in (
        ("claude-code", r"^claude-cli/"),  # claude-cli/2.1.197 (external, cli)
        ("codex", r"^codex[_-]\w+/"),  # codex_exec/0.171.0 (…), codex-tui/…, codex_cli_rs/…: the originator (codex-rs default_client.rs)
        ("opencode", r"^opencode/"),  # opencode/1.18.33
        ("zed", r"^Zed/"),  # Zed/0.190.5 (macos; aarch64)
        ("litellm", r"^litellm/"),  # litellm/1.110.2 (aider and others built on LiteLLM send it too)
        ("ollama-cli", r"^ollama/\S+ \("),  # ollama/0.12.3 (amd64 linux) Go/go1.24.1 (api/client.go)
        ("open-webui", r"open-webui|openwebui"),
        ("ollama-python", r"^ollama-python/"),  # also LangChain's langchain-ollama
        ("ollama-js", r"^ollama-js/"),  # also n8n's and LangChain.js's Ollama nodes
        ("openai-python", r"^(Async)?(Azure)?OpenAI/Python"),
        ("openai-node", r"^OpenAI/JS"),
        ("anthropic-python", r"^(Async)?Anthropic\w*/Python"),
        ("anthropic-node", r"^Anthropic/JS"),
        ("ai-sdk", r"ai-sdk"),  # the Vercel AI SDK (Cline's Ollama provider, and other apps)
        ("curl", r"^curl/"),
        ("python-httpx", r"^python-httpx/"),
        ("python-requests", r"^python-requests/"),
        ("aiohttp", r"aiohttp/"),  # Python/3.11 aiohttp/3.12.15 (Open WebUI without its forwarded headers)
        ("node-fetch", r"^node-fetch"),  # Continue's IDE extension
        ("go-http", r"^Go-http-client/"),
        ("browser", r"^Mozilla/"),
    )
)
CLIENT_FAMILIES = (*(family for family, _ in FAMILIES), OTHER_CLIENT)
# Agents told by a header of their own where the User-Agent says nothing of them (a shared SDK's, or none at all).
HEADER_FAMILIES = {
    b"x-claude-code-session-id": "claude-code",
    b"originator": "codex",  # codex-rs default_headers(): sent with its set-up calls, which carry no User-Agent
    b"x-session-affinity": "opencode",
    b"agent-session-id": "goose",
    b"goose-session-id": "goose",
    b"x-openwebui-chat-id": "open-webui",
    b"x-openwebui-user-id": "open-webui",
}
# The headers an agent names its session (conversation) by, the first of this list first: Claude Code, Codex (codex-rs
# requests/headers.rs writes session_id), opencode, goose, Open WebUI (with its user-info headers forwarded).
SESSION_HEADERS = {name: rank for rank, name in enumerate((b"x-claude-code-session-id", b"session_id", b"session-id", b"x-session-id",
                                                           b"x-session-affinity", b"agent-session-id", b"goose-session-id", b"x-openwebui-chat-id"))}
AGENT_FAMILIES = frozenset(family for family, _ in FAMILIES[:7])


def family_of(user_agent: str, hinted: str | None = None) -> str:
    """The family of a User-Agent; where it names no agent, the family a header of the agent's own names (``hinted``)."""
    for family, pattern in FAMILIES:
        if pattern.search(user_agent):
            return family if family in AGENT_FAMILIES or hinted is None else hinted
    return hinted or OTHER_CLIENT


@dataclass(frozen=True, slots=True)
class Caller:
    """What a request's headers say of who sent it, read in one pass as it arrives."""

    user_agent: bytes = b""
    client_name: bytes = b""  # X-Client-Name
    hinted: str | None = None  # an agent's own header (HEADER_FAMILIES)
    session: bytes = b""  # its session id, as the agent sent it (kept only hashed, session_hash)

    @classmethod
    def of(cls, headers: list[tuple[bytes, bytes]]) -> Caller:
        user_agent = client_name = session = b""
        session_rank = len(SESSION_HEADERS)
        hinted = None
        for name, value in headers:
            if name == b"user-agent":
                user_agent = value
            elif name == b"x-client-name":
                client_name = value
            else:
                family = HEADER_FAMILIES.get(name)
                if family is not None and (name != b"originator" or value.startswith(b"codex")):
                    hinted = hinted or family
                rank = SESSION_HEADERS.get(name, session_rank)
                if rank < session_rank:
                    session, session_rank = value, rank
        return cls(user_agent, client_name, hinted, session.strip()[:256])

    def family(self) -> str:
        return family_of(self.user_agent.decode("latin-1"), self.hinted)

    def session_hash(self) -> str | None:
        """The session's id hashed (16 hex digits of its SHA-256): joins a session's turns, shows no agent's id."""
        return hashlib.sha256(self.session).hexdigest()[:16] if self.session else None


class KeyFileError(ValueError):
    """The --api-keys file cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class ApiKeys:
    """``name: key`` pairs, kept as SHA-256 digests; ``check`` answers which name a presented key belongs to, or None."""

    pairs: tuple[tuple[str, bytes], ...]  # (name, digest of the key)

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        try:
            text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors write one) is no part of the first name
        except OSError as exc:
            raise KeyFileError(f"--api-keys {path}: cannot be read ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise KeyFileError(f"--api-keys {path}, line {line}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from exc
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
