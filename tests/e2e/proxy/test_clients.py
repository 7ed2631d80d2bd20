"""Who is using Ollama, and who may: the client label, optional API keys, the scrape token."""

from __future__ import annotations

import hashlib

import time
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest

from otel_proxy.clients import ApiKeys
from tests.support.harness import Server, configure_fake, fake_stats, otel_proxy, scrape

MODEL = "llama3.2:1b"
MESSAGES = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def test_two_clients_requests_and_tokens_split_exactly(fake: Server, proxy: Server):
    configure_fake(fake, reset_stats=True)
    oai = openai.OpenAI(base_url=proxy.url + "/v1", api_key="ollama", max_retries=0)
    native = ollama.Client(host=proxy.url)
    for _ in range(3):
        oai.chat.completions.create(model=MODEL, messages=MESSAGES)
    for _ in range(2):
        native.chat(model=MODEL, messages=MESSAGES)
    httpx.post(proxy.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False}, headers={"x-client-name": "nightly-eval"})
    truth = fake_stats(fake)["by_route"]
    metrics = scrape(proxy.url)
    for client, route, count in (("openai-python", "/v1/chat/completions", 3), ("ollama-python", "/api/chat", 2), ("nightly-eval", "/api/generate", 1)):
        assert metrics.value("ollama_client_requests_total", ollama_client=client) == count == truth[route]["requests"]
        assert metrics.value("ollama_client_tokens_total", ollama_client=client, gen_ai_token_type="output") == truth[route]["generated_tokens"]
        assert metrics.value("ollama_client_tokens_total", ollama_client=client, gen_ai_token_type="input") == truth[route]["prompt_tokens"]
        assert metrics.value("ollama_client_request_duration_seconds_count", ollama_client=client) == count
    listed = {entry["client"] for entry in httpx.get(proxy.url + "/-/requests").json()["requests"]}
    assert listed == {"openai-python", "ollama-python", "nightly-eval"}
    # The client label is on counters and one histogram only, never on the per-model families.
    assert not [s for s in metrics.samples if "ollama_client" in s.labels and "gen_ai_request_model" in s.labels]


@pytest.fixture
def keyed(fake: Server, tmp_path: Path):
    keys = tmp_path / "keys"
    keys.write_text("# name: key\nopen-webui: sk-webui-0123456789\nclaude-code: sk-claude-9876543210\n")
    with otel_proxy(fake.url, "--api-keys", str(keys), "--metrics-token", "scrape-me") as proxy:
        yield proxy


def forwarded(fake: Server) -> int:
    return sum(fake_stats(fake)["requests"].values())


def test_with_keys_only_keyed_requests_reach_ollama_in_every_client_library(fake: Server, keyed: Server):
    configure_fake(fake, reset_stats=True)
    def calls(key: str | None):
        """Each library's call with ``key``; with None, the library sends no key at all (openai's cannot: it
        refuses to be built without one, so its "no key" is the same request sent by httpx)."""
        def no_key_openai() -> object:
            return httpx.post(keyed.url + "/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES}).raise_for_status()

        return {
            "ollama": lambda: ollama.Client(host=keyed.url, **({"headers": {"Authorization": f"Bearer {key}"}} if key else {})).chat(model=MODEL, messages=MESSAGES),
            "openai": (lambda: openai.OpenAI(base_url=keyed.url + "/v1", api_key=key, max_retries=0).chat.completions.create(model=MODEL, messages=MESSAGES))
            if key else no_key_openai,
            "anthropic": lambda: anthropic.Anthropic(base_url=keyed.url, max_retries=0, **({"api_key": key} if key else {"api_key": "unused", "default_headers": {"x-api-key": anthropic.Omit()}}))
            .messages.create(model=MODEL, max_tokens=64, messages=MESSAGES),
        }

    for call in calls("sk-webui-0123456789").values():
        call()
    assert forwarded(fake) == 3
    errors = {"ollama": ollama.ResponseError, "openai": openai.AuthenticationError, "anthropic": anthropic.AuthenticationError}
    for key in ("sk-webui-0123456788", None):  # wrong by one character; none at all
        for name, call in calls(key).items():
            with pytest.raises((errors[name], httpx.HTTPStatusError)) as raised:
                call()
            status = raised.value.response.status_code if isinstance(raised.value, httpx.HTTPStatusError) else raised.value.status_code
            assert status == 401 and "API key" in str(raised.value.response.text if isinstance(raised.value, httpx.HTTPStatusError) else raised.value), (name, key)
    assert forwarded(fake) == 3  # nothing else reached Ollama
    metrics = scrape_with_token(keyed)
    assert metrics.value("http_server_request_duration_seconds_count", error_type="unauthorized", http_response_status_code="401") == 6
    assert metrics.value("ollama_client_requests_total", ollama_client="open-webui") == 3


def scrape_with_token(proxy: Server):
    from tests.support.harness import Scrape

    answer = httpx.get(proxy.url + "/metrics", headers={"authorization": "Bearer scrape-me"})
    assert answer.status_code == 200
    return Scrape(answer.text)


def test_each_apis_401_has_that_apis_error_shape_and_the_key_never_reaches_ollama(fake: Server, keyed: Server):
    native = httpx.post(keyed.url + "/api/chat", json={"model": MODEL, "messages": []})
    assert native.status_code == 401 and isinstance(native.json()["error"], str)
    compatible = httpx.post(keyed.url + "/v1/chat/completions", json={"model": MODEL, "messages": []}, headers={"authorization": "Bearer nope"})
    assert compatible.status_code == 401 and set(compatible.json()["error"]) >= {"message", "type"}
    messages = httpx.post(keyed.url + "/v1/messages", json={"model": MODEL, "messages": []}, headers={"x-api-key": "nope"})
    assert messages.status_code == 401 and messages.json()["type"] == "error" and messages.json()["error"]["type"] == "authentication_error"
    echoed = httpx.get(keyed.url + "/fake/echo", headers={"authorization": "Bearer sk-claude-9876543210", "x-other": "kept"}).json()
    sent = {name.lower() for name, _ in echoed["headers"]}
    assert "authorization" not in sent and "x-api-key" not in sent and "x-other" in sent
    log = keyed.log()
    assert "sk-claude" not in log and "sk-webui" not in log


def test_tricks_get_a_clear_answer_and_nothing_reaches_ollama(fake: Server, keyed: Server):
    configure_fake(fake, reset_stats=True)
    good = "sk-webui-0123456789"
    cases = {
        "key in the query string": httpx.get(keyed.url + f"/api/tags?api_key={good}&key={good}"),
        "malformed Authorization": httpx.get(keyed.url + "/api/tags", headers={"authorization": f"Basic {good}"}),
        "huge Authorization": httpx.get(keyed.url + "/api/tags", headers={"authorization": "Bearer " + "a" * 100_000}),
        "two Authorization headers": httpx.get(keyed.url + "/api/tags", headers=[("authorization", "Bearer wrong"), ("authorization", f"Bearer {good}")]),
        "the same key twice": httpx.get(keyed.url + "/api/tags", headers=[("authorization", f"Bearer {good}"), ("authorization", f"Bearer {good}")]),
        "a key in both headers, different": httpx.get(keyed.url + "/api/tags", headers={"authorization": f"Bearer {good}", "x-api-key": "other"}),
    }
    for case, answer in cases.items():
        assert answer.status_code in (401, 431), (case, answer.status_code)
        assert answer.json()["error"], case
    assert forwarded(fake) == 0
    assert httpx.get(keyed.url + "/api/tags", headers={"authorization": f"Bearer {good}"}).status_code == 200
    assert httpx.get(keyed.url + "/metrics").status_code == 401 and httpx.get(keyed.url + "/-/requests").status_code == 401
    assert httpx.get(keyed.url + "/-/requests", headers={"authorization": "Bearer scrape-me"}).status_code == 200


def test_every_key_is_compared_in_constant_time_and_none_is_skipped(monkeypatch):
    """What keeps the time from telling how much of a key matched: each presented key is hashed, then its digest
    is compared with every configured key's digest by hmac.compare_digest (equal lengths, whatever was sent),
    with no early return on a match. (A timing probe cannot tell this from `==` on digests: probes do not
    share digest prefixes. This one fails with `==`, with an early return, or with the raw key compared.)"""
    import hmac

    key = "sk-" + "k" * 61
    keys = ApiKeys.load_text(f"a: {key}\nb: {'z' * 64}\nc: short\n")
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(left, right):
        compared.append((left, right))
        return real(left, right)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for presented, name in ((key.encode(), "a"), (b"z" * 64, "b"), (b"short", "c"), ((key[:-1] + "x").encode(), None), (b"sk-k", None), (b"", None)):
        compared.clear()
        assert keys.check(presented) == name, presented
        assert len(compared) == 3, (presented, compared)  # every key, the matching one first or not
        assert all(left == hashlib.sha256(presented).digest() and len(left) == len(right) == 32 for left, right in compared)
        assert [right for _, right in compared] == [hashlib.sha256(k).digest() for k in (key.encode(), b"z" * 64, b"short")]


def test_an_exposed_proxy_without_keys_says_so(fake: Server):
    with otel_proxy(fake.url, host="0.0.0.0") as exposed:
        time.sleep(0.2)
        log = exposed.log()
    assert "listens on 0.0.0.0 with no API keys" in log


def test_a_bad_key_file_is_a_clear_error(fake: Server, tmp_path: Path):
    import subprocess
    import sys

    bad = tmp_path / "keys"
    bad.write_text("open-webui sk-without-a-colon\n")
    result = subprocess.run([sys.executable, "-m", "otel_proxy", "--api-keys", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and f"--api-keys {bad}, line 1: expected `name: key`" in result.stderr
