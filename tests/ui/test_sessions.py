"""ui/sessions.py: an agent's session from its turns in /-/requests."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ui.sessions import sessions


def turn(session: str | None, at: float, duration: float, first: float | None, wait: float | None = 0.0, tokens: tuple = (100, 10), **more) -> dict:
    return {"session": session, "start_time": datetime.fromtimestamp(at, tz=timezone.utc).isoformat(), "duration_s": duration, "time_to_first_token_s": first,
            "queue_wait_s": wait, "input_tokens": tokens[0], "output_tokens": tokens[1], "client": "claude-code", "model": "qwen3-coder:30b", **more}


def test_a_session_adds_its_turns_and_the_time_between_them():
    entries = [
        turn("a", 1000.0, 2.0, 1.5, wait=0.5),  # 0.5 s waiting, 1 s to the first output, 0.5 s after it
        turn(None, 1001.0, 9.0, 1.0),  # no session: left out
        turn("a", 1005.0, 1.0, 1.0, tokens=(200, 6), first_output="tool_call"),  # a call first: all before the first output
        turn("b", 1003.0, 1.0, None, wait=None, tokens=(5, None), client="codex", model="gpt-oss:20b"),  # no stream, no count
        turn("a", 1010.0, 3.0, 0.25, wait=None),
    ]
    a, b = sessions(entries)  # the latest first
    assert (a.session, a.client, a.models, a.turns, a.input_tokens, a.output_tokens) == ("a", "claude-code", ("qwen3-coder:30b",), 3, 400, 26)
    assert (a.started, a.ended) == (1000.0, 1013.0)
    assert a.waiting_s == 0.5 and a.to_first_output_s == pytest.approx(1.0 + 1.0 + 0.25) and a.after_first_output_s == pytest.approx(0.5 + 0.0 + 2.75)
    assert a.between_turns_s == pytest.approx((1005 - 1002) + (1010 - 1006)) and a.in_ollama_s == pytest.approx(6.0)
    assert (b.turns, b.input_tokens, b.output_tokens, b.to_first_output_s, b.after_first_output_s, b.between_turns_s) == (1, 5, None, 1.0, 0.0, 0.0)
    assert sessions([turn(None, 1.0, 1.0, 0.5)]) == []


def test_a_sessions_cache_hits_and_the_turns_that_lost_it():
    from ui.sessions import sessions

    base = {"session": "s", "client": "claude-code", "model": "m", "duration_s": 1.0, "queue_wait_s": 0.0, "time_to_first_token_s": 0.5, "output_tokens": 5}
    turns = [{**base, "start_time": f"2026-12-07T10:00:0{index}+00:00", "input_tokens": tokens, "prompt_cached_tokens": cached, **more}
             for index, (tokens, cached, more) in enumerate([(1000, 0, {}), (2000, 1990, {}), (3000, 40, {"cache_miss": "reload", "read_again_tokens": 1950})])]
    (found,) = sessions(turns)
    assert (found.cached_tokens, found.input_tokens, found.turns_read_again, found.read_again_tokens) == (2030, 6000, 1, 1950)
    (unknown,) = sessions([*turns[:2], {**turns[2], "prompt_cached_tokens": None}])
    assert unknown.cached_tokens is None  # one turn's count unknown: the session's is too
