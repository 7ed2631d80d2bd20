from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.harness import Server, configure_fake, fake_ollama, otel_proxy


@pytest.fixture(scope="session")
def fake() -> Iterator[Server]:
    """One fake Ollama for the session (10 ms between tokens)."""
    with fake_ollama(token_delay=0.01) as server:
        yield server


@pytest.fixture
def proxy(fake: Server) -> Iterator[Server]:
    """A fresh proxy per test, so its /metrics start at zero."""
    configure_fake(fake, token_delay=0.01, answer_delay=0)
    with otel_proxy(fake.url) as server:
        yield server
