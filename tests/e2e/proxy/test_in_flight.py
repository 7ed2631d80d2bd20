"""/-/in-flight: the generation requests the proxy is passing on now, who sent them, and whether their answers began."""

from __future__ import annotations

import threading
import time

import httpx

from tests.support.harness import configure_fake, fake_ollama, otel_proxy, until


def test_requests_on_their_way_are_listed_with_their_client_until_they_end():
    with fake_ollama(token_delay=0.2) as fake, otel_proxy(fake.url) as proxy:
        configure_fake(fake, answer_delay=1.0)  # its answer begins a second after it arrives
        listed = lambda: httpx.get(proxy.url + "/-/in-flight").json()["requests"]  # noqa: E731
        assert listed() == []
        sent = time.time()
        body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 10}}
        done = threading.Thread(target=lambda: httpx.post(proxy.url + "/api/chat", json=body, headers={"X-Client-Name": "nightly-eval"}, timeout=60).raise_for_status())
        done.start()
        try:
            (waiting,) = until(listed)
            assert (waiting["route"], waiting["model"], waiting["client"], waiting["phase"]) == ("/api/chat", "llama3.2:1b", "nightly-eval", "waiting")
            assert sent - 0.5 <= waiting["started"] <= time.time() and waiting["age_s"] >= 0
            (answering,) = until(lambda: [r for r in listed() if r["phase"] == "answering"])
            assert answering["started"] == waiting["started"]
        finally:
            done.join()
        until(lambda: listed() == [])
        httpx.get(proxy.url + "/api/ps").raise_for_status()  # not a generation: never listed
        assert listed() == []
