"""The traffic generator's command line, against the fake Ollama."""

from __future__ import annotations

import json
import os
import subprocess

from tests.harness import PYTHON, ROOT, free_port

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
