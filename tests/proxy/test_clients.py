"""otel_proxy/clients.py on its own: the client label, the key file and how a request presents a key.

In process and exact (`make mutation` runs these on the module); tests/e2e/proxy/test_clients.py checks the same
rules through the running proxy and the official client libraries."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from otel_proxy.clients import CLIENT_FAMILIES, FAMILIES, ApiKeys, KeyFile, KeyFileError, carries_a_key, family_of, presented_key

KEYS = "# who: key\n\nopen-webui: sk-webui-0123456789\n  claude-code :  sk-claude:with:colons  \n"


def test_the_families_are_the_documented_list_first_match_first():
    assert CLIENT_FAMILIES == ("ollama-python", "ollama-js", "openai-python", "openai-node", "anthropic-python", "anthropic-node", "open-webui",
                               "curl", "python-httpx", "python-requests", "go-http", "browser", "other")
    assert len(FAMILIES) == 12
    # case-insensitive, anchored where the SDK names itself first, anywhere for Open WebUI (which sends a browser's agent)
    assert family_of("OLLAMA-PYTHON/1") == "ollama-python" and family_of("x ollama-python/1") == "other"
    assert family_of("Mozilla/5.0 ... OpenWebUI") == "open-webui" and family_of("Mozilla/5.0") == "browser"


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
