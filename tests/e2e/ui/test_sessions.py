"""Coding agents through the proxy, as they send: Claude Code on /v1/messages and Codex on /v1/responses, each turn
resending the growing conversation with tools offered and answered by a tool call, their User-Agents and session
headers as their own source writes them. The proxy names each agent and keeps its session hashed; the page's
Sessions view, read in headless Chromium, says each session's turns, tokens and time in Ollama as the fake counted
them, and the time between turns as the test spent it (the agent's tools running).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.browser import dashboard_tab
from tests.support.harness import Server, configure_fake, fake_ollama, otel_proxy, scrape
from tests.support.payloads import TOOLS_ANTHROPIC, TOOLS_OPENAI

MODEL = "qwen3-coder:30b"
PAUSE_S = 0.6  # the agent's tool running between two turns
CLAUDE = {"user-agent": "claude-cli/2.1.197 (external, cli)", "x-app": "cli", "x-claude-code-session-id": "3f1c2b9e-0d4a-4c2e-9a51-7b0e5c1d2a10"}
CODEX = {"user-agent": "codex_exec/0.171.0 (Ubuntu 24.4.0; x86_64) xterm-256color (codex_exec; 0.171.0)", "originator": "codex_exec",
         "session_id": "019a6b2c-3d4e-7f80-9a1b-2c3d4e5f6a7b"}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Server, Server]]:
    with fake_ollama(token_delay=0.01, load_delay=0.1) as fake, otel_proxy(fake.url) as proxy:
        configure_fake(fake, add_models={MODEL: {"family": "qwen3moe"}}, reset_stats=True)
        yield fake, proxy


def agent_turns(url: str, route: str, headers: dict[str, str], turns: int) -> list[tuple[float, float]]:
    """``turns`` streamed turns, each resending the conversation so far (a tool call and its result added each time),
    a pause between them; each turn's start and end on this clock."""
    history: list[dict] = [{"role": "user", "content": "Fix the failing test in tests/test_app.py " * 50}]
    spans = []
    for turn in range(turns):
        if route == "/v1/messages":
            body = {"model": MODEL, "system": [{"type": "text", "text": "You are Claude Code."}], "messages": history, "tools": TOOLS_ANTHROPIC,
                    "max_tokens": 32000, "stream": True}
        else:
            body = {"model": MODEL, "instructions": "You are Codex.", "input": history, "tools": TOOLS_OPENAI, "stream": True}
        started = time.time()
        with httpx.stream("POST", url + route, content=json.dumps(body).encode(), headers={**headers, "content-type": "application/json"}, timeout=60) as answer:
            assert answer.status_code == 200
            answer.read()
        spans.append((started, time.time()))
        history = [*history, {"role": "assistant", "content": f"calling get_weather, turn {turn}"}, {"role": "user", "content": "tool result: 21 C " * 40}]
        if turn < turns - 1:
            time.sleep(PAUSE_S)
    return spans


def test_agents_are_named_their_sessions_kept_hashed_and_the_sessions_view_shows_them(served):
    fake, proxy = served
    claude = agent_turns(proxy.url, "/v1/messages", CLAUDE, 3)
    codex = agent_turns(proxy.url, "/v1/responses", CODEX, 2)
    httpx.post(proxy.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False}, headers={"user-agent": "curl/8.5.0"}).raise_for_status()
    truth = httpx.get(fake.url + "/fake/stats").json()["by_route"]
    served = httpx.get(fake.url + "/fake/served").json()  # trace id -> the fake's seconds

    # named by their own User-Agents, never by their session ids
    metrics = scrape(proxy.url)
    assert metrics.value("ollama_client_requests_total", ollama_client="claude-code") == 3
    assert metrics.value("ollama_client_requests_total", ollama_client="codex") == 2
    assert CLAUDE["x-claude-code-session-id"] not in metrics.text and CODEX["session_id"] not in metrics.text
    entries = httpx.get(proxy.url + "/-/requests").json()["requests"]
    hashed = {name: hashlib.sha256(agent[key].encode()).hexdigest()[:16] for name, agent, key in
              (("claude-code", CLAUDE, "x-claude-code-session-id"), ("codex", CODEX, "session_id"))}
    assert {entry["client"]: entry["session"] for entry in entries if entry["session"]} == hashed
    assert all(entry["first_output"] == "tool_call" and entry["tokens_per_second"] is None for entry in entries if entry["session"])
    assert CLAUDE["x-claude-code-session-id"] not in json.dumps(entries)

    with dashboard_tab({"PROXY_URL": proxy.url, "PROMETHEUS_URL": "http://127.0.0.1:9", "OLLAMA_URL": ""}) as tab:
        tab.get_by_text("Sessions", exact=True).click()
        tab.wait_for_selector('[data-testid="stTable"] table', timeout=60_000)
        header = [cell.strip() for cell in tab.locator('[data-testid="stTable"] thead th').all_inner_texts()]
        shown = [[cell.strip() for cell in row.locator("th, td").all_inner_texts()] for row in tab.locator('[data-testid="stTable"] tbody tr').all()]
    rows = {row[header.index("client")]: dict(zip(header, row)) for row in shown}
    assert set(rows) == {"claude-code", "codex"}  # the curl request has no session
    for client, route, spans in (("claude-code", "/v1/messages", claude), ("codex", "/v1/responses", codex)):
        row = rows[client]
        assert row["session"] == hashed[client][:8] and row["model"] == MODEL and row["turns"] == str(len(spans))
        assert row["tokens in / out"] == f"{truth[route]['prompt_tokens']:.0f} / {truth[route]['generated_tokens']:.0f}"
        # in Ollama: the fake's own time for each of the session's turns, from arrival to the last byte (a few ms of proxy beside)
        in_ollama = sum(served[entry["trace_id"]] for entry in entries if entry["client"] == client)
        assert seconds(row["in Ollama"]) == pytest.approx(in_ollama, rel=0.1, abs=0.005 * len(spans)), (row, in_ollama)
        # between turns: the gaps as the proxy saw them (its /-/requests), exactly; they hold the client's own pauses, never
        # less, and more by the client's sending and reading, which a busy machine stretches
        turns = sorted((entry for entry in entries if entry["client"] == client), key=lambda entry: entry["start_time"])
        starts = [datetime.fromisoformat(entry["start_time"]).timestamp() for entry in turns]
        seen = sum(start - (before + entry["duration_s"]) for before, entry, start in zip(starts, turns, starts[1:]))
        assert seconds(row["between turns"]) == pytest.approx(seen, abs=0.001 if seen < 1 else 0.051), (row, seen)
        between = sum(start - end for (_, end), (start, _) in zip(spans, spans[1:]))
        assert between >= PAUSE_S * (len(spans) - 1) and between - 0.002 <= seen <= between + 0.5, (seen, between)


def seconds(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group(0))
    return value / 1000 if text.endswith(" ms") else value * 60 if text.endswith(" min") else value
