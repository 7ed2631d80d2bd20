"""The proxy's scheduler view on its own (otel_proxy/scheduling.py), where timings can be set exactly.

Each case is a sequence of arrivals and ends that Ollama's FIFO slot semaphore (llm/llama_server.go)
allows, and the slot wait it implies for an answer that carries no durations (OpenAI, Anthropic)."""

from __future__ import annotations

import pytest

from otel_proxy.scheduling import COLD, WARM, SchedulerView

MODEL = "llama3.2:3b"


def warm_view(slots: int) -> SchedulerView:
    """Nothing resident, then one request that loads the model with Ollama's defaults: it is warm."""
    view = SchedulerView(num_parallel=slots)
    view.observe_ps([])
    loader = view.arrive(MODEL, {}, -2.0)
    assert loader.kind == COLD
    view.end(loader, -1.0, True, 0.5)
    view.observe_ps([{"name": MODEL, "context_length": 4096, "details": {"family": "llama"}}])
    return view


def untimed_slot_wait(view: SchedulerView, arrival, answered_at: float, ended: float) -> float | None:
    view.end(arrival, ended, True, None)
    parts = []
    view.settle(arrival, None, parts.append, answered_at=answered_at)
    assert len(parts) == 1
    return parts[0].slot_s


def test_an_untimed_answer_waits_for_the_slot_that_frees_first():
    """Two slots, both held by earlier requests: the third starts when the first of them ends."""
    view = warm_view(2)
    a, b = view.arrive(MODEL, {}, 0.0, timed=False), view.arrive(MODEL, {}, 0.1, timed=False)
    c = view.arrive(MODEL, {}, 0.2, timed=False)
    assert c.kind == WARM and c.company == (a.serial, b.serial)
    view.end(a, 1.0, True, None)
    assert untimed_slot_wait(view, c, answered_at=1.05, ended=1.5) == pytest.approx(0.8)
    view.end(b, 2.0, True, None)


def test_requests_that_reached_ollama_after_it_are_not_waited_for():
    """A, B and D arrived before C at the proxy; A ended at 0.5; B and D still run when C answers at 0.6.
    With two slots only one of B and D can have been ahead of C: C took A's slot, a 0.5 s wait. (Before this
    rule the wait came out unknown: CI saw it on a busy host, tests/test_busy_host.py.)"""
    view = warm_view(2)
    a, b, d = (view.arrive(MODEL, {}, 0.0, timed=False) for _ in range(3))
    c = view.arrive(MODEL, {}, 0.0, timed=False)
    view.end(a, 0.5, True, None)
    assert untimed_slot_wait(view, c, answered_at=0.6, ended=0.7) == pytest.approx(0.5)
    for other in (b, d):
        view.end(other, 2.0, True, None)


def test_no_wait_when_a_slot_was_free_and_none_when_all_ahead_still_run_beside_it():
    view = warm_view(2)
    a = view.arrive(MODEL, {}, 0.0, timed=False)
    c = view.arrive(MODEL, {}, 0.1, timed=False)
    assert untimed_slot_wait(view, c, answered_at=0.15, ended=0.3) == 0.0  # one ahead, two slots
    view.end(a, 1.0, True, None)
    one = warm_view(1)
    a, b = one.arrive(MODEL, {}, 0.0, timed=False), one.arrive(MODEL, {}, 0.0, timed=False)
    c = one.arrive(MODEL, {}, 0.0, timed=False)
    one.end(a, 0.4, True, None)
    one.end(b, 0.9, True, None)
    assert untimed_slot_wait(one, c, answered_at=0.95, ended=1.2) == pytest.approx(0.9)  # one slot: behind both
