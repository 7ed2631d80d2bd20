"""The fake's prompt cache (tests/fake/prompt_cache.py) held to llama.cpp's real server, request by request.

The same prompt sequences go through both: llama.cpp's own server (xllamacpp, b11549) on a tiny random model, and the
fake's model of it, fed the tokens the real server generated. Each request's ``cache_n`` must be the same. Every
sequence runs on a fresh server (a fresh cache), as a reload or an eviction gives Ollama's runner.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake.prompt_cache import PromptCache, tokens_of
from tests.support.harness import Server
from tests.support.llama_server import KV_BYTES_PER_TOKEN, N_VOCAB, serving, write_model

TURN_TOKENS = 4  # generated each turn


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "tiny-llama.gguf")


def conversation(seed: int, length: int = 3000) -> list[int]:
    """A conversation's tokens: its first token its own, the rest random (no control tokens)."""
    rng = random.Random(seed)
    return [100 + seed] + [rng.randrange(3, N_VOCAB) for _ in range(length - 1)]


A, X, Y, Z = (conversation(seed) for seed in range(4))
S = conversation(9, 200)  # a system prompt
EDITED = Z[:5] + [Z[5] % (N_VOCAB - 4) + 3 if Z[5] != 3 else 4] + Z[6:]  # its sixth token changed: an early edit

# name: (slots, --cache-ram in MiB, the prompts in order, whether any prompt reuses a cache)
SEQUENCES = {
    "a growing conversation, then the same prompt again": (1, 8192, [A[:100], A[:150], A[:200], A[:200]], True),
    "three conversations taking turns on one slot": (1, 8192, [c[:n] for n in (120, 180, 240) for c in (X, Y, Z)] + [X[:300]], True),
    # one slot without the RAM cache loses every conversation to the next
    "the same without the RAM cache, one slot": (1, 0, [c[:n] for n in (120, 180, 240) for c in (X, Y, Z)] + [X[:300]], False),
    "three conversations on three slots, one edited early": (3, 8192, [c[:n] for n in (120, 180) for c in (X, Y, Z)] + [EDITED[:240], X[:240], Z[:240]], True),
    "the same without the RAM cache, three slots": (3, 0, [c[:n] for n in (120, 180) for c in (X, Y, Z)] + [EDITED[:240], X[:240], Z[:240]], True),
    # agents sharing a system prompt: a slot that keeps half of itself for the next is not saved, so its conversation
    # is lost while the system prompt alone is reused; once the conversations outgrow twice the system prompt, saved
    "three conversations sharing a system prompt on one slot": (1, 8192, [S + c[:n] for n in (150, 250, 400, 600) for c in (X, Y, Z)], True),
    # 1 MiB holds about 2,000 tokens of this model's KV: the oldest entries go first
    "past the RAM cache's limit": (1, 1, [c[:n] for n in (600, 700, 800, 900) for c in (X, Y, Z)], True),
    "a conversation read again after a reload": (1, 8192, [A[:300]], False),  # the first turn on a new runner: nothing cached
}


def idle(client: httpx.Client, timeout_s: float = 30.0) -> None:
    """Wait until the server has released the answer's slot: it sends the answer first, so a request sent at once may
    find that slot still busy and take another. The sequences are of requests one after another, each slot free again
    before the next, as the fake's model takes them."""
    deadline = time.monotonic() + timeout_s
    while any(slot["is_processing"] for slot in client.get("/slots").json()):
        assert time.monotonic() < deadline, "a slot of llama-server stayed busy"


@pytest.fixture
def llama_server(model: Path, request) -> Iterator[tuple[Server, PromptCache]]:
    slots, cache_ram_mib, _, _ = SEQUENCES[request.param]
    with serving(model, "--np", str(slots), "--cache-ram-mib", str(cache_ram_mib)) as server:
        yield server, PromptCache(slots, 4096 * slots, KV_BYTES_PER_TOKEN, cache_ram_mib << 20)


@pytest.mark.parametrize("llama_server", list(SEQUENCES), indirect=True)
def test_the_fakes_cache_n_is_the_real_servers_request_by_request(llama_server, request):
    server, fake = llama_server
    _, _, prompts, reuses = SEQUENCES[request.node.callspec.params["llama_server"]]
    real, modelled = [], []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for prompt in prompts:
            answer = client.post("/completion", json={"prompt": prompt, "n_predict": TURN_TOKENS, "cache_prompt": True, "temperature": 0.0,
                                                      "ignore_eos": True, "return_tokens": True})
            answer.raise_for_status()
            body = answer.json()
            real.append(body["timings"]["cache_n"])
            idle(client)
            slot, cached = fake.begin(tokens_of(prompt))
            fake.end(slot, tokens_of(prompt), tokens_of(body["tokens"]))
            modelled.append(cached)
    assert modelled == real, (modelled, real)
    assert any(real) is reuses, real
