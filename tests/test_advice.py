"""The status line names why requests are slow and what to change, read from a real Prometheus.

Three runs against the fake's scheduler (one slot per model, 0.4 s loads), each on its own
model: queue-bound, reload-bound and context-bound. The advice for each model names its cause.
"""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from tests.harness import configure_fake, fake_ollama, otel_proxy, prometheus
from ui.queries import Filters, Prometheus
from ui.status import advise, read_snapshot, recent_requests, rules_sentence, assess

QUEUED, RELOADED, FULL = "llama3.2:1b", "qwen2.5:7b", "phi3:mini"


def generate(url: str, model: str, num_ctx: int | None = None, prompt: str = "why is the sky blue", tokens: int = 20) -> None:
    options: dict = {"num_predict": tokens}
    if num_ctx:
        options["num_ctx"] = num_ctx
    assert httpx.post(url + "/api/generate", json={"model": model, "prompt": prompt, "stream": False, "options": options}, timeout=60).status_code == 200


def test_the_advice_names_the_cause_of_each_slow_run():
    with (
        fake_ollama(token_delay=0.01, load_delay=0.4) as fake,
        otel_proxy(fake.url, "--ps-interval", "0.2") as proxy,
        prometheus({"otel-proxy": [f"127.0.0.1:{proxy.port}"]}) as prom,
    ):
        configure_fake(fake, parallel=1)
        for model in (QUEUED, RELOADED):  # every series exists before the runs, so rates see them grow
            generate(proxy.url, model, tokens=2)
        generate(proxy.url, FULL, num_ctx=64, tokens=2)
        generate(proxy.url, RELOADED, num_ctx=8192, tokens=2)
        time.sleep(2.5)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:  # queue-bound: 8 at once on one slot, twice
            for _ in range(2):
                list(pool.map(lambda _: generate(proxy.url, QUEUED), range(8)))
                time.sleep(1.2)
        for num_ctx in (4096, 8192, 4096, 8192):  # reload-bound: a client switching num_ctx
            generate(proxy.url, RELOADED, num_ctx=num_ctx, tokens=2)
            time.sleep(0.3)
        for _ in range(4):  # context-bound: prompts longer than the context
            generate(proxy.url, FULL, num_ctx=64, prompt=" ".join(["word"] * 300), tokens=8)
            time.sleep(0.3)
        time.sleep(2.5)
        client, recent = Prometheus(prom.url), recent_requests(proxy.url)
        advice = {model: advise(read_snapshot(client, Filters(model=model), window="1m", recent=recent)) for model in (QUEUED, RELOADED, FULL)}
        everything = read_snapshot(client, Filters(), window="1m", recent=recent)
    assert len(advice[QUEUED]) == 1 and advice[QUEUED][0].startswith(f"{QUEUED} requests are queuing (p95 wait ")
    assert advice[QUEUED][0].endswith("in flight): raise OLLAMA_NUM_PARALLEL or add a host")
    assert len(advice[RELOADED]) == 1 and advice[RELOADED][0].endswith(f"reloads of {RELOADED} in 10 min: clients switch num_ctx between 4096 and 8192; pin one value")
    assert int(advice[RELOADED][0].split()[0]) >= 3
    assert len(advice[FULL]) == 1 and advice[FULL][0] == f"prompts fill 100 % of {FULL}'s 64-token context: raise num_ctx"
    assert sorted(advise(everything)) == sorted(advice[QUEUED] + advice[RELOADED] + advice[FULL])
    assert rules_sentence(everything, assess(everything)) in advice[QUEUED] + advice[RELOADED] + advice[FULL]
