"""The fake's native answers hold the fields Ollama's Go structs write, in Go's order (tests/fake/wire.py):
no field Ollama lacks, none it always writes missing, none out of place."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fake import wire
from tests.support.harness import Server

MODEL = "llama3.2:1b"


def check(answer: dict, fields: wire.Fields, where: str) -> None:
    names = [name for name, _ in fields]
    unknown = [key for key in answer if key not in names]
    assert not unknown, (where, unknown)
    keys = list(answer)
    assert keys == sorted(keys, key=names.index), (where, keys)  # Go writes struct order
    missing = [name for name, omitted_when_empty in fields if not omitted_when_empty and name not in answer]
    assert not missing, (where, missing)


def lines(answer: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in answer.text.splitlines() if line.strip()]


def test_generate_and_chat_answers_whole_and_streamed(fake: Server):
    body = {"model": MODEL, "prompt": "hi", "options": {"num_predict": 3}}
    whole = httpx.post(fake.url + "/api/generate", json={**body, "stream": False}, timeout=30).json()
    check(whole, wire.GENERATE_RESPONSE, "generate")
    assert whole["eval_count"] == 3 and whole["load_duration"] >= 0
    streamed = lines(httpx.post(fake.url + "/api/generate", json=body, timeout=30))
    for chunk in streamed:
        check(chunk, wire.GENERATE_RESPONSE, "generate stream")
    assert [chunk["done"] for chunk in streamed] == [False] * 3 + [True] and "eval_count" not in streamed[0]
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 3}}
    answer = httpx.post(fake.url + "/api/chat", json={**chat, "stream": False}, timeout=30).json()
    check(answer, wire.CHAT_RESPONSE, "chat")
    check(answer["message"], wire.MESSAGE, "chat message")
    for chunk in lines(httpx.post(fake.url + "/api/chat", json=chat, timeout=30)):
        check(chunk, wire.CHAT_RESPONSE, "chat stream")
        check(chunk["message"], wire.MESSAGE, "chat stream message")


def test_ps_tags_embeddings_and_version(fake: Server):
    httpx.post(fake.url + "/api/generate", json={"model": MODEL, "prompt": "load", "stream": False}, timeout=30)
    ps = httpx.get(fake.url + "/api/ps").json()
    assert list(ps) == ["models"] and ps["models"]
    for entry in ps["models"]:
        check(entry, wire.PROCESS_MODEL_RESPONSE, "ps")
        check(entry["details"], wire.MODEL_DETAILS, "ps details")
    tags = httpx.get(fake.url + "/api/tags").json()
    assert list(tags) == ["models"] and tags["models"]
    for entry in tags["models"]:
        check(entry, wire.LIST_MODEL_RESPONSE, "tags")
        check(entry["details"], wire.MODEL_DETAILS, "tags details")
    check(httpx.post(fake.url + "/api/embed", json={"model": MODEL, "input": "x"}, timeout=30).json(), wire.EMBED_RESPONSE, "embed")
    check(httpx.post(fake.url + "/api/embeddings", json={"model": MODEL, "prompt": "x"}, timeout=30).json(), wire.EMBEDDING_RESPONSE, "embeddings")
    check(httpx.get(fake.url + "/api/version").json(), wire.VERSION_RESPONSE, "version")


@pytest.mark.parametrize("fields", [wire.GENERATE_RESPONSE, wire.CHAT_RESPONSE, wire.PROCESS_MODEL_RESPONSE, wire.LIST_MODEL_RESPONSE])
def test_the_check_fails_on_a_field_out_of_place_or_missing(fields):
    answer = {name: 1 for name, _ in fields}
    first, second = list(answer)[:2]
    with pytest.raises(AssertionError):
        check({second: 1, first: 1, **{k: v for k, v in answer.items() if k not in (first, second)}}, fields, "swapped")
    with pytest.raises(AssertionError):
        check({**answer, "made_up": 1}, fields, "extra")
    with pytest.raises(AssertionError):
        check({k: v for k, v in answer.items() if k != "model" and k != "embedding"}, fields, "missing")
