"""The proxy's scheduler view on its own (otel_proxy/scheduling.py), where timings can be set exactly.

Each case is a sequence of arrivals, answers, ends and /api/ps reads that Ollama's scheduler allows
(server/sched.go: one pending queue for all models, reloads drain; llm/llama_server.go: the FIFO slot
semaphore), and the account docs/metrics.md gives for it: the kind at arrival, and the pending wait,
drain, load and slot wait, from Ollama's durations or, for answers without them (OpenAI, Anthropic),
from the others' reports and ends. `make mutation` runs these on scheduling.py (docs/testing.md)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from otel_proxy.ollama import Report
from otel_proxy.scheduling import (
    COLD, JOINED, RELOAD, SLOT_WAIT_FLOOR_S, UNKNOWN, WARM, Arrival, Decomposition, Runner, SchedulerView, _compare, changed_options, context_fill,
)

MODEL = "llama3.2:3b"


def warm_view(slots: int) -> SchedulerView:
    """Nothing resident, then one request that loads the model with Ollama's defaults: it is warm."""
    view = SchedulerView(num_parallel=slots)
    view.observe_ps([])
    loader = view.arrive(MODEL, {}, -2.0)
    assert loader.kind == COLD
    view.end(loader.serial, -1.0, True, 0.5)
    view.observe_ps([{"name": MODEL, "context_length": 4096, "details": {"family": "llama"}}])
    return view


def untimed_slot_wait(view: SchedulerView, arrival, answered_at: float, ended: float) -> float | None:
    view.end(arrival.serial, ended, True, None)
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
    view.end(a.serial, 1.0, True, None)
    assert untimed_slot_wait(view, c, answered_at=1.05, ended=1.5) == pytest.approx(0.8)
    view.end(b.serial, 2.0, True, None)


def test_requests_that_reached_ollama_after_it_are_not_waited_for():
    """A, B and D arrived before C at the proxy; A ended at 0.5; B and D still run when C answers at 0.6.
    With two slots only one of B and D can have been ahead of C: C took A's slot, a 0.5 s wait. (Before this
    rule the wait came out unknown: CI saw it on a busy host, tests/e2e/proxy/test_busy_host.py.)"""
    view = warm_view(2)
    a, b, d = (view.arrive(MODEL, {}, 0.0, timed=False) for _ in range(3))
    c = view.arrive(MODEL, {}, 0.0, timed=False)
    view.end(a.serial, 0.5, True, None)
    assert untimed_slot_wait(view, c, answered_at=0.6, ended=0.7) == pytest.approx(0.5)
    for other in (b, d):
        view.end(other.serial, 2.0, True, None)


def test_no_wait_when_a_slot_was_free_and_none_when_all_ahead_still_run_beside_it():
    view = warm_view(2)
    a = view.arrive(MODEL, {}, 0.0, timed=False)
    c = view.arrive(MODEL, {}, 0.1, timed=False)
    assert untimed_slot_wait(view, c, answered_at=0.15, ended=0.3) == 0.0  # one ahead, two slots
    view.end(a.serial, 1.0, True, None)
    one = warm_view(1)
    a, b = one.arrive(MODEL, {}, 0.0, timed=False), one.arrive(MODEL, {}, 0.0, timed=False)
    c = one.arrive(MODEL, {}, 0.0, timed=False)
    one.end(a.serial, 0.4, True, None)
    one.end(b.serial, 0.9, True, None)
    assert untimed_slot_wait(one, c, answered_at=0.95, ended=1.2) == pytest.approx(0.9)  # one slot: behind both


# Timed answers (the native API's durations), set exactly: each rule of docs/metrics.md "Where the time went" -----

OTHER = "qwen3:8b"


def settled(view: SchedulerView, arrival, report, answered_at=None) -> list:
    parts: list = []
    view.settle(arrival, report, parts.append, answered_at=answered_at)
    return parts


def timed(load: float, total: float | None = None, prompt: float = 0.0, eval_: float = 0.0) -> Report:
    return Report(load_s=load, total_s=load + prompt + eval_ if total is None else total, prompt_eval_s=prompt, eval_s=eval_)


def test_before_ps_is_read_nothing_is_known_and_after_it_a_first_request_loads_cold():
    view = SchedulerView()
    assert view.arrive(MODEL, {}, 0.0).kind == UNKNOWN
    view = SchedulerView()
    view.observe_ps([])
    first = view.arrive(MODEL, {"num_ctx": 2048, "temperature": 0}, 0.0)
    assert (first.kind, first.ahead, first.wanted, first.context_length) == (COLD, (), (("num_ctx", 2048),), 2048)
    joined = view.arrive(MODEL, {"num_ctx": 2048}, 0.1)
    assert (joined.kind, joined.loader, joined.company, joined.ahead, joined.context_length) == (JOINED, first.serial, (first.serial,), (first.serial,), 2048)
    assert view.arrive(MODEL, None, 0.2).kind == UNKNOWN  # a body too large to read: its options are not known
    assert view.arrive(MODEL, {"num_gpu": 0}, 0.3).kind == UNKNOWN  # the load asked num_gpu of Ollama's default, not known


def test_a_cold_load_behind_another_models_load_waits_for_its_hand_over_and_names_it():
    view = SchedulerView()
    view.observe_ps([])
    a = view.arrive(MODEL, {}, 0.0)
    b = view.arrive(OTHER, {}, 0.2)
    assert b.kind == COLD and b.ahead == (a.serial,)
    assert settled(view, b, timed(1.5, prompt=0.1, eval_=0.4), answered_at=1.8) == []  # a has not ended: the account waits
    view.responded(a.serial, 1.05)
    view.end(a.serial, 1.2, True, 1.0)  # handed its runner at 0.0 + 1.0
    view.end(b.serial, 2.2, True, 1.5)
    done = settled(view, b, timed(1.5, prompt=0.1, eval_=0.4))
    assert done == [Decomposition(pytest.approx(0.8), 0.0, pytest.approx(0.7), 0.0, load_reason=COLD, behind=((MODEL, pytest.approx(0.8)),))]
    assert done[0].waiting_s == pytest.approx(0.8)
    assert settled(view, a, timed(1.0)) == [Decomposition(0.0, 0.0, 1.0, 0.0, load_reason=COLD)]


def test_the_waiting_account_is_settled_when_the_one_ahead_ends_and_flush_settles_the_rest():
    view = SchedulerView()
    view.observe_ps([])
    a, b = view.arrive(MODEL, {}, 0.0), view.arrive(OTHER, {}, 0.1)
    c = view.arrive(MODEL, {}, 0.2)
    got_b, got_c = settled(view, b, timed(2.0)), settled(view, c, timed(1.5))
    assert got_b == [] and got_c == [] and c.kind == JOINED and c.ahead == (a.serial, b.serial)
    view.end(a.serial, 1.1, True, 1.0)  # b's one ahead has ended: b is settled; c still waits for b
    assert got_b == [Decomposition(pytest.approx(0.9), 0.0, pytest.approx(1.1), 0.0, load_reason=COLD, behind=((MODEL, pytest.approx(0.9)),))]
    assert got_c == []
    view.flush()  # at shutdown: b's hand-over was never learnt, so c's split is unknown, not guessed
    assert got_c == [Decomposition(slot_s=0.0, unknown_s=1.5, load_reason=UNKNOWN)]


def test_a_joined_request_waited_its_whole_load_duration_for_the_load_it_joined():
    view = SchedulerView()
    view.observe_ps([])
    a = view.arrive(MODEL, {}, 0.0)
    j = view.arrive(MODEL, {}, 0.4)
    view.end(a.serial, 1.5, True, 1.0)
    assert settled(view, j, timed(0.6, total=1.0, eval_=0.2)) == [
        Decomposition(pytest.approx(0.6), 0.0, 0.0, pytest.approx(0.2), behind=((MODEL, pytest.approx(0.6)),))]


def test_a_reload_drains_the_old_runner_then_loads_and_names_the_option_that_changed():
    view = warm_view(1)  # loaded with Ollama's defaults; /api/ps said 4096
    running = view.arrive(MODEL, {}, 0.0)
    assert running.kind == WARM
    reload = view.arrive(MODEL, {"num_ctx": 8192}, 1.0)
    assert (reload.kind, reload.cause, set(reload.drains)) == (RELOAD, "num_ctx 4096 -> 8192", {running.serial})
    late = view.arrive(MODEL, {}, 1.2)  # the old options still join the draining runner
    assert late.kind == WARM and late.serial in reload.drains
    view.end(running.serial, 2.0, True, 0.001)
    view.end(late.serial, 2.5, True, 0.001)
    view.end(reload.serial, 4.0, True, 2.5)
    assert settled(view, reload, timed(2.5)) == [
        Decomposition(0.0, pytest.approx(1.5), pytest.approx(1.0), 0.0, load_reason=RELOAD, reload_cause="num_ctx 4096 -> 8192")]
    assert view.arrive(MODEL, {"num_ctx": 8192}, 5.0).kind == WARM
    again = view.arrive(MODEL, {}, 5.1)
    assert (again.kind, again.cause) == (RELOAD, "num_ctx 8192 -> 4096")


def test_a_short_load_duration_is_no_wait_and_the_rest_under_the_floor_is_ollamas_own():
    view = warm_view(1)
    warm = view.arrive(MODEL, {}, 0.0)
    view.end(warm.serial, 1.0, True, 0.002)
    assert settled(view, warm, timed(0.002, total=1.004, prompt=0.5, eval_=0.5)) == [Decomposition(0.0, 0.0, 0.0, 0.0, scheduling_s=pytest.approx(0.004))]
    assert settled(view, warm, timed(0.002, total=1.302, prompt=0.5, eval_=0.5)) == [Decomposition(0.0, 0.0, 0.0, pytest.approx(0.3), scheduling_s=pytest.approx(0.002))]
    # a warm request with a long load_duration: what it was is not told apart
    assert settled(view, warm, timed(0.5, total=1.5, eval_=1.0)) == [Decomposition(slot_s=0.0, unknown_s=0.5, load_reason=UNKNOWN)]
    assert Decomposition().waiting_s is None and Decomposition(slot_s=0.25, drain_s=0.5).waiting_s == 0.75


def test_what_ps_says_is_resident_expired_or_gone_decides_the_next_kind():
    view = warm_view(4)
    assert view.model(MODEL).context_length == 4096 and view.model(MODEL).defaults == {"num_ctx": 4096}
    view.observe_ps([{"name": MODEL, "context_length": 4096, "expires_at": "2026-12-01T10:05:00Z", "details": {"family": "llama"}}], read_at=10.0)
    assert view.model(MODEL).expires_at == pytest.approx(1796119500.0)
    assert view.arrive(MODEL, {}, 11.0, now_epoch=1796119499.0).kind == WARM
    view = warm_view(4)
    view.observe_ps([{"name": MODEL, "context_length": 4096, "expires_at": "2026-12-01T10:05:00Z", "details": {}}], read_at=10.0)
    assert view.arrive(MODEL, {}, 11.0, now_epoch=1796119501.0).kind == COLD  # expired since the read
    view = warm_view(4)
    view.observe_ps([])
    assert view.arrive(MODEL, {}, 11.0).kind == COLD  # unloaded
    view = warm_view(4)
    view.observe_ps([{"name": MODEL, "details": {"format": "safetensors"}}, {"name": OTHER, "details": {"family": "qwen3vl"}}, {"model": 3}])
    assert view.model(MODEL).slots(4) == 1 and view.model(OTHER).slots(4) == 1
    assert view.arrive(OTHER, {}, 0.0).kind == UNKNOWN  # resident, but not seen loaded: its runner options are not known
    view.observe_ps([{"name": MODEL, "details": {"format": "gguf", "family": "llama"}}])
    assert view.model(MODEL).slots(4) == 4


def test_a_failed_load_is_forgotten_with_its_name_and_a_failed_request_beside_a_load_is_not():
    view = warm_view(1)
    other = view.arrive(OTHER, {}, 0.0)
    beside = view.arrive(OTHER, {}, 0.1)
    view.end(other.serial, 0.5, False, None)  # the load may not have happened: what is loaded is not known
    assert view.model(OTHER).resident is None and view.arrive(OTHER, {}, 0.6).kind == UNKNOWN
    view.end(beside.serial, 0.7, False, None)
    assert view.arrive(MODEL, {}, 1.0).kind == WARM
    view = SchedulerView()
    view.observe_ps([])
    ghost = view.arrive("no-such-model", {}, 0.0)
    view.end(ghost.serial, 0.1, False, None)
    assert "no-such-model" not in view._models and view.arrive("no-such-model", {}, 0.2).kind == COLD


def test_context_fill_is_the_share_used_or_unknown():
    assert context_fill(1000, 24, 4096) == 0.25
    assert context_fill(4096, None, 4096) == 1.0
    assert context_fill(None, 10, 4096) is None and context_fill(10, 10, None) is None and context_fill(10, 10, 0) is None


# Untimed answers (OpenAI, Anthropic): the waits the others' reports tell -----------------------------------------


def test_an_untimed_request_that_joined_a_load_waited_for_its_hand_over_then_for_the_slot():
    view = SchedulerView(num_parallel=1)
    view.observe_ps([])
    a = view.arrive(MODEL, {}, 0.0)
    j = view.arrive(MODEL, {}, 0.4, timed=False)
    view.end(a.serial, 1.2, True, 1.0)
    view.end(j.serial, 1.5, True, None)
    assert settled(view, j, None, answered_at=1.3) == [Decomposition(pytest.approx(0.6), 0.0, 0.0, pytest.approx(0.2), behind=((MODEL, pytest.approx(0.6)),))]
    assert settled(view, j, None) == [Decomposition()]  # no answer time: nothing is told


def test_an_untimed_load_behind_another_waits_for_it_and_its_own_load_is_not_told_apart():
    view = SchedulerView()
    view.observe_ps([])
    a = view.arrive(MODEL, {}, 0.0)
    b = view.arrive(OTHER, {}, 0.2, timed=False)
    view.end(a.serial, 1.2, True, 1.0)
    view.end(b.serial, 2.0, True, None)
    assert settled(view, b, None, answered_at=1.8) == [Decomposition(pytest.approx(0.8), 0.0, None, 0.0, load_reason=COLD, behind=((MODEL, pytest.approx(0.8)),))]
    assert settled(view, b, None, answered_at=0.9) == [Decomposition(pytest.approx(0.7), 0.0, None, 0.0, load_reason=COLD, behind=((MODEL, pytest.approx(0.7)),))]


def test_behind_a_request_that_ended_without_a_load_duration_the_split_is_unknown():
    view = SchedulerView()
    view.observe_ps([])
    a = view.arrive(MODEL, {}, 0.0)
    b = view.arrive(OTHER, {}, 0.2, timed=False)
    view.end(a.serial, 1.2, False, None)  # failed before reporting
    view.end(b.serial, 2.0, True, None)
    assert settled(view, b, None, answered_at=1.8) == [Decomposition(load_reason=COLD)]
    assert settled(view, b, timed(1.5)) == [Decomposition(slot_s=0.0, unknown_s=1.5, load_reason=UNKNOWN)]


def test_an_untimed_reload_drains_then_loads():
    view = warm_view(1)
    running = view.arrive(MODEL, {}, 0.0, timed=False)
    reload = view.arrive(MODEL, {"num_ctx": 8192}, 1.0, timed=False)
    view.end(running.serial, 2.0, True, None)
    view.end(reload.serial, 4.0, True, None)
    assert settled(view, reload, None, answered_at=3.5) == [
        Decomposition(0.0, pytest.approx(1.0), None, 0.0, load_reason=RELOAD, reload_cause="num_ctx 4096 -> 8192")]


def test_requests_left_on_a_replaced_runner_reload_the_old_options_back_behind_the_reload():
    """Two requests with the old options reached Ollama after the reload had drained the runner: the first reloads
    them back (draining the new runner), the second joins it (server/sched.go processPending)."""
    view = warm_view(1)
    reload = view.arrive(MODEL, {"num_ctx": 8192}, 1.0, timed=False)
    late1 = view.arrive(MODEL, {}, 1.1, timed=False)
    late2 = view.arrive(MODEL, {}, 1.2, timed=False)
    assert late1.kind == late2.kind == WARM  # what the proxy saw at arrival: the old runner still there
    view.responded(reload.serial, 2.0)
    first, second = view._arrivals[late1.serial], view._arrivals[late2.serial]
    assert (first.kind, first.cause, first.ahead, first.company) == (RELOAD, "num_ctx 8192 -> 4096", (reload.serial,), ())
    assert (second.kind, second.loader, second.ahead, second.company) == (JOINED, late1.serial, (reload.serial, late1.serial), (late1.serial,))
    assert set(first.drains) == {reload.serial}
    view.end(reload.serial, 2.5, True, None)
    view.end(late1.serial, 4.0, True, None)
    view.end(late2.serial, 4.2, True, None)
    assert settled(view, late1, None, answered_at=3.5) == [
        Decomposition(pytest.approx(0.9), pytest.approx(0.5), None, 0.0, load_reason=RELOAD, reload_cause="num_ctx 8192 -> 4096",
                      behind=((MODEL, pytest.approx(0.9)),))]
    assert view.arrive(MODEL, {}, 5.0).kind == WARM and view.arrive(MODEL, {"num_ctx": 8192}, 5.1).kind == RELOAD


def test_a_reloads_label_names_the_options_that_changed_and_none_of_their_values():
    assert changed_options("num_ctx 4096 -> 8192") == "num_ctx"
    assert changed_options("num_gpu 99 -> 0, num_ctx 4096 -> 8192, num_gpu 1 -> 2") == "num_ctx,num_gpu"
    assert changed_options(None) is None and changed_options("") is None


# Each rule at its edges: whole arrivals, exact boundaries, and the paths a busy host takes rarely -----------------


def test_every_kind_of_arrival_carries_exactly_what_its_account_needs():
    view = warm_view(1)  # request 1 loaded the model with Ollama's defaults; /api/ps said 4096
    warm = view.arrive(MODEL, {}, 0.0, timed=False)
    assert warm == Arrival(2, MODEL, 0.0, WARM, context_length=4096, company=(), timed=False)
    assert view.model(MODEL).in_flight == {2: 0.0}
    view.end(warm.serial, 0.2, True, None)
    reload = view.arrive(MODEL, {"num_ctx": 8192}, 1.0)
    assert reload == Arrival(3, MODEL, 1.0, RELOAD, "num_ctx 4096 -> 8192", (), frozenset(), 8192, (("num_ctx", 8192),))
    view.end(reload.serial, 1.5, True, 0.5)
    back = view.arrive(MODEL, {"num_ctx": 4096}, 2.0)
    assert back == Arrival(4, MODEL, 2.0, RELOAD, "num_ctx 8192 -> 4096", (), frozenset(), 4096, (("num_ctx", 4096),))
    joined = view.arrive(MODEL, {}, 2.1, timed=False)  # Ollama's default is 4096: the load it joins, and its context
    assert joined == Arrival(5, MODEL, 2.1, JOINED, None, (4,), frozenset(), 4096, (), (4,), 4, False)
    too_large = view.arrive(MODEL, None, 2.2, timed=False)
    assert too_large == Arrival(6, MODEL, 2.2, UNKNOWN, ahead=(4, 5), timed=False)
    assert view.model(OTHER).resident is False  # /api/ps was read and did not list it


def test_a_model_expires_only_past_its_expiry_and_is_then_not_resident():
    def read(view: SchedulerView, expires: str) -> None:
        view.observe_ps([{"name": MODEL, "context_length": 4096, "expires_at": expires}], read_at=10.0)

    view = warm_view(1)
    read(view, "2026-12-01T10:05:00Z")
    assert view.arrive(MODEL, {}, 11.0, now_epoch=1796119500.0).kind == WARM  # at its expiry: still there
    view = warm_view(1)
    read(view, "2026-12-01T10:05:00Z")
    assert view.arrive(MODEL, {}, 11.0, now_epoch=1796119500.5).kind == COLD
    assert view.model(MODEL).resident is False  # until its load answers
    view = warm_view(1)
    read(view, "2000-01-01T00:00:00Z")
    assert view.arrive(MODEL, {}, 11.0).kind == COLD  # the clock read now


def test_a_runner_a_reload_waits_on_stays_until_the_reloads_turn_comes_behind_another_models_load():
    """The old runner has drained, but the reload still waits behind another model's load in the one pending queue:
    requests with the old options are handed the old runner until then (server/sched.go processPending)."""
    view = warm_view(1)
    running = view.arrive(MODEL, {}, 0.0)
    other = view.arrive(OTHER, {}, 0.1)
    reload = view.arrive(MODEL, {"num_ctx": 8192}, 0.2)
    assert reload.ahead == (other.serial,)
    view.end(running.serial, 0.5, True, 0.001)
    early = view.arrive(MODEL, {}, 0.6)
    assert early.kind == WARM
    view.end(early.serial, 0.7, True, 0.001)
    view.responded(other.serial, 1.0)  # the reload's turn: the old runner goes
    after = view.arrive(MODEL, {}, 1.1)
    assert (after.kind, after.cause, after.ahead) == (RELOAD, "num_ctx 8192 -> 4096", (reload.serial,))


def test_behind_a_timed_request_that_joined_a_load_the_account_waits_for_its_own_report():
    view = SchedulerView()
    view.observe_ps([])
    a = view.arrive(MODEL, {}, 0.0)
    j = view.arrive(MODEL, {}, 0.1)
    b = view.arrive(OTHER, {}, 0.2)
    view.end(a.serial, 1.2, True, 1.0)
    got = settled(view, b, timed(1.5))
    assert got == []  # j's hand-over is its own arrival plus its load_duration: not known until it ends
    view.end(j.serial, 1.3, True, 0.9)
    assert got == [Decomposition(pytest.approx(0.8), 0.0, pytest.approx(0.7), 0.0, load_reason=COLD, behind=((MODEL, pytest.approx(0.8)),))]


def test_an_untimed_request_ahead_was_handed_over_with_the_load_it_joined_or_at_its_answer():
    view = SchedulerView()
    view.observe_ps([])
    a = view.arrive(MODEL, {}, 0.0)
    j = view.arrive(MODEL, {}, 0.1, timed=False)
    b = view.arrive(OTHER, {}, 0.2)
    view.end(a.serial, 1.2, True, 1.0)
    view.end(j.serial, 1.3, True, None)
    view.end(b.serial, 2.5, True, 1.5)
    assert settled(view, b, timed(1.5)) == [Decomposition(pytest.approx(0.8), 0.0, pytest.approx(0.7), 0.0, load_reason=COLD, behind=((MODEL, pytest.approx(0.8)),))]
    view = SchedulerView()
    view.observe_ps([])
    a = view.arrive(MODEL, {}, 0.0, timed=False)
    b = view.arrive(OTHER, {}, 0.2)
    view.end(a.serial, 1.0, True, None)  # its end was its answer: handed over by then
    assert settled(view, b, timed(1.5)) == [Decomposition(pytest.approx(0.8), 0.0, pytest.approx(0.7), 0.0, load_reason=COLD, behind=((MODEL, pytest.approx(0.8)),))]


def test_the_wait_is_split_by_model_each_slice_once_in_order():
    view = SchedulerView()
    view.observe_ps([])
    a = view.arrive(MODEL, {}, 0.0)
    third = view.arrive("third:1b", {}, 0.05)
    b = view.arrive(OTHER, {}, 0.2)
    view.end(a.serial, 0.3, True, 0.1)  # handed over at 0.1, before b arrived
    view.end(third.serial, 1.6, True, 1.5)  # at 1.55
    assert settled(view, b, timed(2.0)) == [Decomposition(pytest.approx(1.35), 0.0, pytest.approx(0.65), 0.0, load_reason=COLD, behind=(("third:1b", pytest.approx(1.35)),))]
    view = SchedulerView()
    view.observe_ps([])
    a, third, b = view.arrive(MODEL, {}, 0.0), view.arrive("third:1b", {}, 0.05), view.arrive(OTHER, {}, 0.2)
    view.end(a.serial, 1.1, True, 1.0)
    view.end(third.serial, 1.6, True, 1.5)
    got = settled(view, b, timed(0.5))  # handed over by 0.7, before the third's load was: that one held it up for nothing
    assert got == [Decomposition(pytest.approx(0.5), 0.0, pytest.approx(0.0), 0.0, load_reason=COLD, behind=((MODEL, pytest.approx(0.5)),))]
    view = warm_view(1)
    a = view.arrive(OTHER, {}, 0.0)
    reload_a = view.arrive(OTHER, {"num_ctx": 8192}, 0.05)
    b = view.arrive("third:1b", {}, 0.2)
    view.end(a.serial, 1.1, True, 1.0)
    view.end(reload_a.serial, 2.1, True, 1.95)  # at 2.0
    assert settled(view, b, timed(2.3)) == [Decomposition(pytest.approx(1.8), 0.0, pytest.approx(0.5), 0.0, load_reason=COLD, behind=((OTHER, pytest.approx(1.8)),))]


def test_a_drain_counts_the_old_runners_requests_that_ended_by_the_reloads_hand_over_and_no_later():
    for ended, drain in ((3.5, 2.5), (5.0, 0.0)):
        view = warm_view(1)
        running = view.arrive(MODEL, {}, 0.0)
        reload = view.arrive(MODEL, {"num_ctx": 8192}, 1.0)
        view.end(running.serial, ended, True, 0.001)
        view.end(reload.serial, 6.0, True, 2.5)
        assert settled(view, reload, timed(2.5)) == [
            Decomposition(0.0, pytest.approx(drain), pytest.approx(2.5 - drain), 0.0, load_reason=RELOAD, reload_cause="num_ctx 4096 -> 8192")]


def test_the_replayed_slot_wait_at_its_edges():
    view = warm_view(1)
    a = view.arrive(MODEL, {}, 0.0, timed=False)
    c = view.arrive(MODEL, {}, 0.1, timed=False)
    view.end(a.serial, 1.0, True, None)
    assert untimed_slot_wait(view, c, answered_at=1.0, ended=1.2) == pytest.approx(0.9)  # the slot freed at its answer
    assert settled(view, c, None, answered_at=1.0) == [Decomposition(0.0, 0.0, 0.0, pytest.approx(0.9))]
    three = warm_view(3)
    a, b, d = (three.arrive(MODEL, {}, 0.0, timed=False) for _ in range(3))
    c = three.arrive(MODEL, {}, 0.0, timed=False)
    three.end(a.serial, 0.4, True, None)
    three.end(b.serial, 0.9, True, None)
    assert untimed_slot_wait(three, c, answered_at=1.0, ended=1.5) == pytest.approx(0.4)  # d beside it: a's slot was the one
    three.end(d.serial, 2.0, True, None)
    two = warm_view(2)
    a, e, b, d = (two.arrive(MODEL, {}, 0.0, timed=False) for _ in range(4))
    c = two.arrive(MODEL, {}, 0.0, timed=False)
    two.end(a.serial, 0.3, True, None)
    two.end(e.serial, 0.5, True, None)
    assert untimed_slot_wait(two, c, answered_at=0.6, ended=0.9) == pytest.approx(0.5)  # one of b and d beside it, not both
    mlx = warm_view(4)
    mlx.observe_ps([{"name": MODEL, "context_length": 4096, "details": {"format": "safetensors"}}])
    a = mlx.arrive(MODEL, {}, 0.0, timed=False)
    c = mlx.arrive(MODEL, {}, 0.1, timed=False)
    mlx.end(a.serial, 0.7, True, None)
    assert untimed_slot_wait(mlx, c, answered_at=0.8, ended=1.0) == pytest.approx(0.6)  # MLX: one slot, whatever num_parallel


def test_what_ps_lists_is_read_entry_by_entry():
    view = SchedulerView()
    view.observe_ps([{"name": 7}, {"model": MODEL, "details": "not an object", "context_length": 1}, {"name": OTHER, "context_length": 0}])
    assert view.ps_reads == 1 and view.model(MODEL).resident is True and view.model(MODEL).context_length == 1
    assert view.model(OTHER).resident is True and view.model(OTHER).context_length is None
    view.observe_ps([])
    assert view.ps_reads == 2 and view.model(MODEL).resident is False and view.model("new:1b").resident is False


def test_a_cold_load_that_ps_lists_before_its_first_answer_is_loaded_and_teaches_the_default_context():
    view = SchedulerView()
    view.observe_ps([])
    view.arrive(MODEL, {}, 0.0)
    view.observe_ps([{"name": MODEL, "context_length": 8192}], read_at=0.5)
    assert view.model(MODEL).defaults == {"num_ctx": 8192}
    assert view.arrive(MODEL, {}, 0.6).kind == WARM
    view = SchedulerView()
    view.observe_ps([])
    view.arrive(MODEL, {"num_ctx": 2048}, 0.0)
    view.observe_ps([{"name": MODEL, "context_length": 2048}], read_at=0.5)
    assert view.model(MODEL).defaults == {} and view.model(MODEL).runners[0].actual == {"num_ctx": 2048}  # asked for: no default learnt


def test_an_expiry_is_kept_only_from_a_read_made_while_the_runner_was_idle():
    entry = {"name": MODEL, "context_length": 4096, "expires_at": "2026-12-01T10:05:00Z"}
    fresh = SchedulerView()
    fresh.observe_ps([entry], read_at=1.0)  # nothing ended yet
    assert fresh.model(MODEL).expires_at == pytest.approx(1796119500.0)
    view = warm_view(1)
    w = view.arrive(MODEL, {}, 0.0)
    view.observe_ps([entry], read_at=0.5)
    assert view.model(MODEL).expires_at is None  # read while a request ran on it
    view.end(w.serial, 1.0, True, 0.001)
    view.observe_ps([entry], read_at=1.0)
    assert view.model(MODEL).expires_at is None  # read as it ended: the expiry may not be the new one yet
    view.observe_ps([entry], read_at=1.5)
    assert view.model(MODEL).expires_at == pytest.approx(1796119500.0)
    view.observe_ps([entry])
    assert view.model(MODEL).expires_at == pytest.approx(1796119500.0)


def test_the_end_of_a_request_leaves_residency_as_known_and_the_queue_without_it():
    view = SchedulerView()
    unknown = view.arrive(MODEL, {}, 0.0)
    view.end(unknown.serial, 0.5, True, 0.2)
    assert view.model(MODEL).resident is None  # before /api/ps: an answer does not say whether it loaded
    view = SchedulerView()
    view.observe_ps([])
    cold = view.arrive(MODEL, {}, 0.0)
    view.responded(cold.serial, 0.4)
    assert view.model(MODEL).resident is True
    view.end(cold.serial, 0.5, True, 0.3)
    assert view.model(MODEL).resident is True
    failed = view.arrive(OTHER, {}, 0.6)
    view.end(failed.serial, 0.7, False, None)
    assert view.arrive("third:1b", {}, 0.8).ahead == ()


def test_the_view_forgets_the_oldest_requests_past_its_bound(monkeypatch):
    monkeypatch.setattr("otel_proxy.scheduling.REMEMBERED", 2)
    view = warm_view(4)
    oldest = view.arrive(MODEL, {}, 0.0)
    others = [view.arrive(MODEL, {}, 0.1 * n) for n in range(1, 4)]
    for n, other in enumerate(others):
        view.end(other.serial, 1.0 + n, True, 0.001)
    assert list(view._ended) == [others[1].serial, others[2].serial] and oldest.serial not in view._arrivals
    view.responded(oldest.serial, 4.0)  # a request it no longer remembers still answers and ends
    view.end(oldest.serial, 4.5, True, 0.001)
    assert view.model(MODEL).in_flight == {}


def test_reports_with_parts_missing_or_at_the_thresholds():
    view = warm_view(1)
    warm = view.arrive(MODEL, {}, 0.0)
    view.end(warm.serial, 1.0, True, 0.002)
    assert settled(view, warm, Report(load_s=0.002, total_s=None)) == [Decomposition(0.0, 0.0, 0.0, None, scheduling_s=0.002)]
    assert settled(view, warm, SimpleNamespace(load_s=0.002, total_s=0.502)) == [Decomposition(0.0, 0.0, 0.0, pytest.approx(0.5), scheduling_s=0.002)]
    assert settled(view, warm, timed(0.0, total=SLOT_WAIT_FLOOR_S)) == [Decomposition(0.0, 0.0, 0.0, SLOT_WAIT_FLOOR_S)]  # the floor is a wait
    assert settled(view, warm, timed(0.1, total=0.603, eval_=0.5)) == [Decomposition(slot_s=0.0, unknown_s=0.1, load_reason=UNKNOWN, scheduling_s=pytest.approx(0.003))]
    cold = SchedulerView()
    cold.observe_ps([])
    a, j, b = cold.arrive(MODEL, {}, 0.0), cold.arrive(MODEL, {}, 0.05), cold.arrive(OTHER, {}, 0.1)
    assert settled(cold, b, timed(0.05)) == [Decomposition(0.0, 0.0, 0.0, 0.0, scheduling_s=pytest.approx(0.05))]  # no load: nothing to wait for
    cold.end(a.serial, 1.0, True, 0.8)
    assert settled(cold, j, timed(0.6, total=0.603)) == [Decomposition(pytest.approx(0.6), 0.0, 0.0, 0.0, behind=((MODEL, pytest.approx(0.6)),), scheduling_s=pytest.approx(0.003))]
    cold.end(j.serial, 1.1, True, 0.6)  # handed over at 0.65
    assert settled(cold, b, timed(1.0, total=1.003)) == [  # behind both requests for MODEL: one slice each, summed
        Decomposition(pytest.approx(0.7), 0.0, pytest.approx(0.3), 0.0, load_reason=COLD, behind=((MODEL, pytest.approx(0.7)),), scheduling_s=pytest.approx(0.003))]


def test_behind_a_load_that_failed_a_reload_keeps_its_cause_and_a_joined_request_claims_no_load():
    for untimed in (True, False):
        view = warm_view(1)
        failed = view.arrive(OTHER, {}, 0.0)
        reload = view.arrive(MODEL, {"num_ctx": 8192}, 0.1, timed=not untimed)
        view.end(failed.serial, 0.5, False, None)
        if untimed:
            assert settled(view, reload, None, answered_at=1.5) == [Decomposition(load_reason=RELOAD, reload_cause="num_ctx 4096 -> 8192")]
        else:
            assert settled(view, reload, timed(1.5, total=1.503)) == [
                Decomposition(slot_s=0.0, unknown_s=1.5, load_reason=UNKNOWN, reload_cause="num_ctx 4096 -> 8192", scheduling_s=pytest.approx(0.003))]
    view = SchedulerView()
    view.observe_ps([])
    failed = view.arrive(MODEL, {}, 0.0)
    joined = view.arrive(MODEL, {}, 0.1, timed=False)
    view.end(failed.serial, 0.5, False, None)
    assert settled(view, joined, None, answered_at=1.0) == [Decomposition()]


def test_an_untimed_account_that_waited_is_settled_with_its_answer_time():
    view = SchedulerView()
    view.observe_ps([])
    a = view.arrive(MODEL, {}, 0.0)
    b = view.arrive(OTHER, {}, 0.2, timed=False)
    got = settled(view, b, None, answered_at=1.8)
    assert got == []
    view.end(a.serial, 1.2, True, 1.0)
    assert got == [Decomposition(pytest.approx(0.8), 0.0, None, 0.0, load_reason=COLD, behind=((MODEL, pytest.approx(0.8)),))]
    view = SchedulerView()
    view.observe_ps([])
    view.arrive(MODEL, {}, 0.0)
    b = view.arrive(OTHER, {}, 0.2, timed=False)
    got = settled(view, b, None, answered_at=1.8)
    view.flush()
    assert got == [Decomposition(load_reason=COLD)]  # the hand-over ahead never learnt: the kind is still known


def test_runner_options_are_compared_one_by_one_against_what_is_known_of_each():
    assert _compare({"num_gpu": 2}, Runner(asked={"num_gpu": 1}), {}) == ("differ", "num_gpu 1 -> 2")  # num_ctx Ollama's on both: passed over
    assert _compare({"num_ctx": 8192, "num_gpu": 2}, Runner(asked={"num_ctx": 4096, "num_gpu": 1}), {}) == ("differ", "num_ctx 4096 -> 8192, num_gpu 1 -> 2")
    assert _compare({"num_gpu": 0}, Runner(asked={}), {}) == ("unknown", None)  # loaded with Ollama's num_gpu, whose value is not known
    assert _compare({"num_ctx": 8192}, Runner(asked={}, actual={"num_ctx": 4096}), {}) == ("differ", "num_ctx 4096 -> 8192")  # /api/ps's value
    assert _compare({}, Runner(asked=None, actual={"num_ctx": 4096}), {"num_ctx": 8192}) == ("differ", "num_ctx 4096 -> 8192")
    assert _compare({}, Runner(asked={}), {}) == ("same", None)


def test_a_request_that_already_answered_on_a_replaced_runner_is_not_requeued():
    view = warm_view(1)
    running = view.arrive(MODEL, {}, 0.9, timed=False)
    view.responded(running.serial, 0.95)  # answering on the old runner: it ran there
    reload = view.arrive(MODEL, {"num_ctx": 8192}, 1.0, timed=False)
    late1 = view.arrive(MODEL, {}, 1.1, timed=False)
    late2 = view.arrive(MODEL, {}, 1.2, timed=False)
    assert late1.company == (running.serial,) and late2.company == (running.serial, late1.serial)
    view.responded(reload.serial, 2.0)
    assert view._arrivals[running.serial].kind == WARM
    first, second = view._arrivals[late1.serial], view._arrivals[late2.serial]
    assert (first.kind, first.company, second.kind, second.company) == (RELOAD, (), JOINED, (late1.serial,))
    on_new = view.arrive(MODEL, {"num_ctx": 8192}, 2.1, timed=False)  # joins the new runner, which the reload back must drain
    assert on_new.kind == WARM and on_new.serial in first.drains
    third = view.arrive(MODEL, {}, 2.2, timed=False)
    assert (third.kind, third.company, third.loader) == (JOINED, (late1.serial, late2.serial), late1.serial)
