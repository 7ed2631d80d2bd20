"""The traffic generator's command line, against the fake Ollama."""

from __future__ import annotations

import json
import os
import subprocess

from tests.support.harness import PYTHON, ROOT, free_port

SCRIPT = os.path.join(os.path.dirname(PYTHON), "ollama-load")


def test_ollama_load_sends_traffic_and_reports_what_it_saw(fake, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one two three\n\nfour five\n")
    result = subprocess.run([SCRIPT, "--url", fake.url, "--duration", "1.5", "--concurrency", "2", "--max-tokens", "5",
                             "--prompt-file", str(prompts), "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["requests"] > 2 and summary["errors"] == 0
    assert summary["output_tokens"] == 5 * summary["requests"]
    assert summary["ttft_p50_s"] > 0 and summary["latency_p95_s"] >= summary["latency_p50_s"]
    human = subprocess.run([SCRIPT, "--url", fake.url, "--model", "qwen2.5:7b", "--duration", "0.5"], capture_output=True, text=True, timeout=60)
    assert human.returncode == 0 and "requests to qwen2.5:7b" in human.stdout and "tokens/s" in human.stdout


def test_ollama_load_says_when_nothing_answers():
    result = subprocess.run([SCRIPT, "--url", f"http://127.0.0.1:{free_port()}", "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cannot reach" in result.stderr and "make up" in result.stderr


def test_ollama_load_speaks_every_api_and_its_counts_match_the_fakes_and_the_proxys(fake, proxy):
    from tests.support.harness import configure_fake, fake_stats, scrape

    configure_fake(fake, token_delay=0.002, answer_delay=0, first_delta_delay=0)
    routes = {"native": {"/api/chat", "/api/generate"}, "openai": {"/v1/chat/completions"}, "responses": {"/v1/responses"}, "anthropic": {"/v1/messages"}}
    for api, paths in routes.items():
        before = scrape(proxy.url).value("ollama_generated_tokens_total")
        configure_fake(fake, reset_stats=True)
        result = subprocess.run([SCRIPT, "--url", proxy.url, "--model", "llama3.2:1b", "--api", api, "--duration", "1", "--concurrency", "2",
                                 "--max-tokens", "5", "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        truth = fake_stats(fake)["by_route"]
        assert set(truth) == paths, (api, truth)
        assert summary["errors"] == 0 and summary["requests"] == sum(t["requests"] for t in truth.values()) > 2, (api, summary)
        assert summary["output_tokens"] == sum(t["generated_tokens"] for t in truth.values()), (api, summary, truth)
        assert summary["input_tokens"] == sum(t["prompt_tokens"] for t in truth.values()), api
        assert summary["ttft_p50_s"] is not None and summary["ttft_p50_s"] > 0
        assert scrape(proxy.url).value("ollama_generated_tokens_total") - before == summary["output_tokens"], api
