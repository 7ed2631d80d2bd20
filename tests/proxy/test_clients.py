"""otel_proxy/clients.py on its own: the client label, the key file and how a request presents a key.

In process and exact (`make mutation` runs these on the module); tests/e2e/proxy/test_clients.py checks the same
rules through the running proxy and the official client libraries."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import pytest

from tests.support.harness import ROOT
from otel_proxy.clients import CLIENT_FAMILIES, FAMILIES, ApiKeys, Caller, KeyFile, KeyFileError, carries_a_key, family_of, presented_key

KEYS = "# who: key\n\nopen-webui: sk-webui-0123456789\n  claude-code :  sk-claude:with:colons  \n"


def test_the_families_are_the_documented_list_first_match_first():
    documented = (ROOT / "docs" / "metrics.md").read_text().split("<!-- client-families -->")[1].split("<!-- /client-families -->")[0]
    assert CLIENT_FAMILIES == tuple(re.findall(r"^\| `([a-z-]+)` \|", documented, re.M))
    assert CLIENT_FAMILIES[-1] == "other" and len(FAMILIES) == 21
    # case-insensitive, anchored where the client names itself first, anywhere for Open WebUI (which sends a browser's agent)
    assert family_of("OLLAMA-PYTHON/1") == "ollama-python" and family_of("x ollama-python/1") == "other"
    assert family_of("Mozilla/5.0 ... OpenWebUI") == "open-webui" and family_of("Mozilla/5.0") == "browser"


# Each client's User-Agent as its own source builds it (the file is named in docs/metrics.md, "Who is using it").
@pytest.mark.parametrize(
    ("user_agent", "family"),
    [
        ("claude-cli/2.1.197 (external, cli)", "claude-code"),  # @anthropic-ai/claude-code cli.js
        ("claude-cli/2.1.110 (external, sdk-ts, agent-sdk/0.2.3)", "claude-code"),
        ("codex_exec/0.171.0 (Ubuntu 24.4.0; x86_64) xterm-256color (codex_exec; 0.171.0)", "codex"),  # codex-rs default_client.rs
        ("codex-tui/0.171.0 (Mac OS 15.6.0; arm64) unknown (codex-tui; 0.171.0)", "codex"),
        ("codex_cli_rs/0.171.0 (Windows 11; x86_64) vscode/1.105.0", "codex"),
        ("opencode/1.18.33", "opencode"),  # opencode's provider headers
        ("Zed/0.190.5 (macos; aarch64)", "zed"),  # crates/zed/src/main.rs
        ("litellm/1.110.2", "litellm"),  # litellm/llms/custom_httpx/http_handler.py; aider through LiteLLM too
        ("ollama/0.12.3 (amd64 linux) Go/go1.24.1", "ollama-cli"),  # api/client.go
        ("open-webui/0.6.5", "open-webui"),
        ("ollama-python/0.6.3 (x86_64 linux) Python/3.11.7", "ollama-python"),  # also langchain-ollama
        ("ollama-js/0.6.3 (x64 linux Node.js/v22.3.0)", "ollama-js"),  # also n8n's Ollama node
        ("OpenAI/Python 3.57.0", "openai-python"),
        ("AsyncOpenAI/Python 3.57.0", "openai-python"),
        ("OpenAI/JS 6.1.0", "openai-node"),  # also Continue's CLI
        ("Anthropic/Python 2.15.0", "anthropic-python"),
        ("AsyncAnthropic/Python 2.15.0", "anthropic-python"),
        ("Anthropic/JS 0.60.0", "anthropic-node"),
        ("ai-sdk/provider-utils/4.0.35 runtime/bun/1.3.14", "ai-sdk"),  # the Vercel AI SDK: Cline's Ollama provider
        ("curl/8.5.0", "curl"),
        ("python-httpx/0.28.1", "python-httpx"),
        ("python-requests/2.34.2", "python-requests"),
        ("Python/3.11 aiohttp/3.12.15", "aiohttp"),  # Open WebUI without its forwarded headers
        ("node-fetch", "node-fetch"),  # Continue's IDE extension
        ("Go-http-client/1.1", "go-http"),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36", "browser"),
        ("", "other"),
        ("my-script/1.0", "other"),
    ],
)
def test_each_client_is_named_by_the_user_agent_its_source_sends(user_agent, family):
    assert family_of(user_agent) == family
    assert Caller.of([(b"user-agent", user_agent.encode())]).family() == family


def test_an_agent_without_a_user_agent_of_its_own_is_named_by_its_own_header():
    def family(*headers: tuple[bytes, bytes]) -> str:
        return Caller.of(list(headers)).family()

    assert family((b"originator", b"codex_exec"), (b"session_id", b"019a")) == "codex"  # codex's set-up calls: no User-Agent
    assert family((b"originator", b"my-app")) == "other"  # only Codex's originator names Codex
    assert family((b"user-agent", b"Python/3.11 aiohttp/3.12.15"), (b"x-openwebui-chat-id", b"c1")) == "open-webui"
    assert family((b"user-agent", b"ai-sdk/openai-compatible/2.0.41"), (b"x-session-affinity", b"ses_1")) == "opencode"
    assert family((b"agent-session-id", b"20260101_1")) == family((b"goose-session-id", b"x")) == "goose"  # goose sends no User-Agent
    assert family((b"user-agent", b"OpenAI/JS 6.1.0"), (b"x-claude-code-session-id", b"a")) == "claude-code"
    # an agent's own User-Agent wins over another agent's header
    assert family((b"user-agent", b"claude-cli/2.1.197 (external, cli)"), (b"agent-session-id", b"g")) == "claude-code"


def test_a_session_is_read_from_its_agents_header_and_kept_only_hashed():
    claude = Caller.of([(b"x-claude-code-session-id", b"0b7c3c1e-session"), (b"session_id", b"codex-id")])
    assert claude.session_hash() == hashlib.sha256(b"0b7c3c1e-session").hexdigest()[:16]  # Claude Code's header comes first
    for name in (b"session_id", b"session-id", b"x-session-id", b"x-session-affinity", b"agent-session-id", b"goose-session-id", b"x-openwebui-chat-id"):
        assert Caller.of([(name, b" id-1 ")]).session_hash() == hashlib.sha256(b"id-1").hexdigest()[:16], name
    assert Caller.of([(b"user-agent", b"curl/8")]).session_hash() is None
    assert Caller.of([(b"session_id", b"x" * 300)]).session_hash() == hashlib.sha256(b"x" * 256).hexdigest()[:16]  # bounded


def test_a_key_file_gives_each_name_its_keys_digest():
    keys = ApiKeys.load_text(KEYS)
    assert [name for name, _ in keys.pairs] == ["open-webui", "claude-code"]
    assert keys.check(b"sk-webui-0123456789") == "open-webui"
    assert keys.check(b"sk-claude:with:colons") == "claude-code"  # the key is all after the first colon, trimmed
    for wrong in (b"sk-webui-012345678", b"sk-webui-0123456789 ", b"", b"open-webui"):
        assert keys.check(wrong) is None, wrong


def test_two_names_with_one_key_answer_the_first():
    assert ApiKeys.load_text("a: same\nb: same\n").check(b"same") == "a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("open-webui sk-1\n", "--api-keys keys, line 1: expected `name: key`"),
        ("# c\na: 1\n: 2\n", "--api-keys keys, line 3: expected `name: key`"),
        ("a:   \n", "--api-keys keys, line 1: expected `name: key`"),
        ("a: 1\nb: 2\na: 3\n", "--api-keys keys, line 3: the name 'a' is used twice"),
        ("# only comments\n\n", "--api-keys keys: no `name: key` line"),
        ("", "--api-keys keys: no `name: key` line"),
    ],
)
def test_a_bad_key_file_names_the_file_and_the_line(text, message):
    with pytest.raises(KeyFileError) as raised:
        ApiKeys.load_text(text)
    assert str(raised.value) == message


def test_an_unreadable_key_file_says_why(tmp_path: Path):
    with pytest.raises(KeyFileError) as raised:
        ApiKeys.load(tmp_path / "missing")
    assert str(raised.value) == f"--api-keys {tmp_path / 'missing'}: cannot be read (No such file or directory)"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"Authorization", b"Bearer sk-1")], (b"sk-1", None)),
        ([(b"authorization", b"  bearer   sk-1  ")], (b"sk-1", None)),
        ([(b"X-Api-Key", b" sk-2 ")], (b"sk-2", None)),
        ([(b"x-other", b"Bearer sk-1")], (None, None)),
        ([], (None, None)),
        ([(b"authorization", b"Basic c2stMQ==")], (None, "the Authorization header is not `Bearer <key>`")),
        ([(b"authorization", b"Bearer ")], (None, "the Authorization header is not `Bearer <key>`")),
        ([(b"authorization", b"sk-1")], (None, "the Authorization header is not `Bearer <key>`")),
        ([(b"authorization", b"Bearer a"), (b"x-api-key", b"b")], (None, "the request presents more than one key")),
        ([(b"authorization", b"Bearer a"), (b"x-api-key", b"a")], (b"a", None)),
        ([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer a")], (None, "the request has more than one Authorization header")),
        ([(b"x-api-key", b"a"), (b"X-API-KEY", b"a")], (b"a", None)),
    ],
)
def test_the_key_a_request_presents_and_each_way_of_presenting_it_wrongly(headers, expected):
    assert presented_key(headers) == expected


def test_every_spelling_of_a_key_header_is_held_back():
    assert [carries_a_key(name) for name in (b"Authorization", b"x-api-key", b"X_API_KEY", b"x_api-key", b"authorisation", b"x-api-keys", b"cookie")] == \
        [True, True, True, True, False, False, False]


def test_the_key_file_is_read_again_when_it_changes_and_a_broken_one_keeps_the_old_keys(tmp_path: Path, caplog):
    path = tmp_path / "keys"
    path.write_text("a: one\n")
    keys = KeyFile(path)
    assert keys.check(b"one") == "a" and keys.reload_if_changed() is False
    path.write_text("a: one\nb: two\n")
    os.utime(path, ns=(1, 1))  # another stamp, whatever the clock's resolution
    with caplog.at_level(logging.INFO, logger="otel_proxy.clients"):
        assert keys.reload_if_changed() is True
    assert keys.check(b"two") == "b" and keys.reload_if_changed() is False
    assert [r.getMessage() for r in caplog.records] == [f"--api-keys {path} read again: 2 keys (a, b)"]  # names, never keys
    path.write_text("broken\n")
    os.utime(path, ns=(2, 2))
    caplog.clear()
    assert keys.reload_if_changed() is False
    assert keys.check(b"two") == "b"
    assert [r.getMessage() for r in caplog.records] == [f"--api-keys {path}, line 1: expected `name: key`; the 2 keys read before stay in force"]
    path.unlink()
    assert keys.reload_if_changed() is False and keys.check(b"one") == "a"  # gone: the old keys stay
    path.write_text("c: three\n")
    assert keys.reload_if_changed() is True and keys.check(b"three") == "c" and keys.check(b"one") is None
    assert keys.reload() is True and keys.check(b"three") == "c"
