"""The advice that only Ollama's own log can give, read from a real Prometheus: requests that bypassed the proxy,
prompts cut to fit the context with their tokens, a runner with fewer slots than OLLAMA_NUM_PARALLEL asks for, and a
runner on the CPU alone on a host with a GPU. Real processes: the fake writing its log as Ollama does, the collector
following it (with an AMD GPU in its sysfs), the proxy, Prometheus scraping both."""

from __future__ import annotations

import httpx

from tests.support.harness import configure_fake, fake_ollama, hw_collector, otel_proxy, prometheus, until
from tests.support.sysfs import amd_tree
from ui.queries import Filters, Prometheus
from ui.status import advise, read_snapshot

VISION = "qwen3-vl:8b"  # an architecture Ollama runs with one slot (server/sched.go load)


def generate(url: str, model: str = "llama3.2:1b", prompt: str = "hi", **options: object) -> None:
    body = {"model": model, "prompt": prompt, "stream": False, "options": {"num_predict": 2, **options}}
    httpx.post(url + "/api/generate", json=body, timeout=60).raise_for_status()


def test_what_ollamas_log_tells_reaches_the_advice(tmp_path):
    log = tmp_path / "server.log"
    with (
        fake_ollama(load_delay=0.05, log=log) as fake,
        otel_proxy(fake.url) as proxy,
        hw_collector(fake.url, "--interval", "0.5", "--ollama-log", str(log), "--sysfs-root", str(amd_tree(tmp_path / "sysfs"))) as collector,
        prometheus({"otel-proxy": [f"127.0.0.1:{proxy.port}"], "hw-collector": [f"127.0.0.1:{collector.port}"]}, scrape_interval="500ms") as prom,
    ):
        configure_fake(fake, parallel=4, add_models={VISION: {"size": 6_000_000_000, "size_vram": 6_000_000_000, "family": "qwen3vl"}})
        for _ in range(2):  # cut to fit a 512-token context, while llama3.2:1b's is the one runner Ollama has started
            generate(proxy.url, prompt="word " * 900, num_ctx=512)
        direct, through = 11, 2
        for _ in range(direct):
            generate(fake.url, num_ctx=512)
        for _ in range(through):
            generate(proxy.url, num_ctx=512)
        generate(proxy.url, VISION)
        generate(proxy.url, "phi3:mini", num_gpu=0)  # -ngl 0: the CPU alone
        cuts = [dict(pair.split("=") for pair in line.split('"truncating input prompt" ')[1].split(" "))
                for line in log.read_text().splitlines() if '"truncating input prompt"' in line]
        assert len(cuts) == 2
        prompt, cut = sum(int(c["prompt"]) for c in cuts), sum(int(c["prompt"]) - int(c["new"]) for c in cuts)
        served = direct + through + 2 + 2  # the cut ones, VISION's and phi3's went through the proxy too
        expected = {
            f"{direct} of {served} requests in the last hour reached Ollama without the proxy, and its numbers miss them: point those clients "
            "at the proxy, or let Ollama listen on 127.0.0.1 only (OLLAMA_HOST)",
            f"Ollama cut {cut:,} of {prompt:,} prompt tokens (2 prompts) to llama3.2:1b in the last hour to fit its context (the answers came "
            "back 200 OK without the start of the prompt): raise num_ctx or OLLAMA_CONTEXT_LENGTH",
            f"{VISION}'s runner has 1 slot where OLLAMA_NUM_PARALLEL asks for 4: Ollama runs it one request at a time (an embedding model, or "
            "an architecture not safe in parallel), so its requests queue; send it fewer at once or give it a host of its own",
            "phi3:mini runs on the CPU alone (num_gpu 0: no layers on the GPU) on a host with a GPU: drop num_gpu 0 from its clients' options "
            "or its Modelfile",
        }
        client = Prometheus(prom.url)
        said = until(lambda: (advice := set(advise(read_snapshot(client, Filters(), window="1m")))) >= expected and advice, deadline_s=30)
    # what else is said comes from the proxy's own view (these prompts filled the context): nothing more from the log
    assert not [text for text in said - expected if "Ollama's log" in text or "without the proxy" in text or "runner" in text], said
