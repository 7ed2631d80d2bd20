"""The fake's scheduler, one test per rule of Ollama's it follows (tests/fake/scheduler.py, shared/ollama-facts.md).

Each test runs the scheduler itself on an event loop, with loads and generations as sleeps,
and checks the parts of each request's time against what Ollama's source says they are.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest

from tests.fake.scheduler import DEFAULT_KEEP_ALIVE_S, GIB, GO_ZERO_TIME, SCHEDULING_OVERHEAD_S, Scheduler, Truth, default_num_ctx, runner_options

LOAD = 0.2
TOLERANCE = 0.03  # seconds: the event loop's own jitter on a shared machine


async def run(scheduler: Scheduler, model: str, seconds: float, after: float = 0.0, **kwargs) -> tuple[Truth, int]:
    """A request ``after`` seconds from now that holds its runner (generating) for ``seconds``."""
    await asyncio.sleep(after)
    options = kwargs.pop("options", None)
    async with scheduler.slot(model, options, kwargs.pop("keep_alive", None), **kwargs) as ticket:
        await asyncio.sleep(seconds)
        ticket.ran(0.0, seconds)
    return ticket.truth, ticket.load_ns


def gather(*calls):
    async def main():
        return await asyncio.gather(*calls)
    return asyncio.run(main())


def test_a_loaded_runner_is_handed_over_at_once_and_the_slot_wait_comes_after_load_duration():
    """server/sched.go GetRunner/useLoadedRunner, then llm/llama_server.go's semaphore (s.sem.Acquire)."""
    async def main():
        scheduler = Scheduler(LOAD, parallel=1)
        await run(scheduler, "a", 0.0)  # loaded
        return await asyncio.gather(run(scheduler, "a", 0.3), run(scheduler, "a", 0.1, after=0.05))
    (first, _), (second, second_load_ns) = asyncio.run(main())
    assert first.load_reason is None and second.load_reason is None
    assert second_load_ns / 1e9 == pytest.approx(SCHEDULING_OVERHEAD_S, abs=TOLERANCE)  # handed over at once
    assert second.slot_s == pytest.approx(0.25, abs=TOLERANCE)  # then it waited for the slot: outside load_duration
    assert second.pending_s == second.drain_s == 0.0


def test_an_mlx_runner_serves_one_request_at_a_time_whatever_num_parallel_is():
    async def main():
        scheduler = Scheduler(LOAD, parallel=8)
        await run(scheduler, "m", 0.0, mlx=True)
        await run(scheduler, "g", 0.0)
        return await asyncio.gather(run(scheduler, "m", 0.2, mlx=True), run(scheduler, "m", 0.0, after=0.05, mlx=True),
                                    run(scheduler, "g", 0.2), run(scheduler, "g", 0.0, after=0.05))
    _, (mlx, _), _, (gguf, _) = asyncio.run(main())
    assert mlx.slot_s == pytest.approx(0.15, abs=TOLERANCE)
    assert gguf.slot_s == pytest.approx(0.0, abs=TOLERANCE)


def test_embedding_models_and_unsafe_architectures_get_one_slot():
    """server/sched.go Scheduler.load: numParallel is 1 without the completion capability, and for some families."""
    async def main():
        scheduler = Scheduler(0.0, parallel=4)
        return await asyncio.gather(run(scheduler, "e", 0.2, one_slot=True), run(scheduler, "e", 0.0, after=0.05, one_slot=True))
    _, (second, _) = asyncio.run(main())
    assert second.slot_s == pytest.approx(0.15, abs=TOLERANCE)


def test_loads_queue_one_at_a_time_for_all_models_and_warm_requests_skip_the_queue():
    """server/sched.go processPending: one pending request at a time, whichever model it is for."""
    async def main():
        scheduler = Scheduler(LOAD, parallel=4)
        await run(scheduler, "c", 0.0)  # c is loaded
        return await asyncio.gather(run(scheduler, "a", 0.0), run(scheduler, "b", 0.0, after=0.02), run(scheduler, "c", 0.0, after=0.04))
    (a, a_ns), (b, b_ns), (c, c_ns) = asyncio.run(main())
    assert (a.load_reason, b.load_reason, c.load_reason) == ("cold", "cold", None)
    assert b.pending_s == pytest.approx(LOAD - 0.02, abs=TOLERANCE) and b.behind == ["a (cold)"]
    assert b_ns / 1e9 == pytest.approx(b.pending_s + b.load_s + SCHEDULING_OVERHEAD_S, abs=TOLERANCE)  # load_duration holds the wait
    assert c_ns / 1e9 < 0.02  # a warm request to a loaded model is not held up by another model's load
    assert a_ns / 1e9 == pytest.approx(LOAD, abs=TOLERANCE) and a.behind == []


def test_a_request_for_a_model_being_loaded_waits_for_that_load_and_does_not_load_again():
    async def main():
        scheduler = Scheduler(LOAD, parallel=4)
        return await asyncio.gather(run(scheduler, "a", 0.0), run(scheduler, "a", 0.0, after=0.05))
    _, (joined, joined_ns) = asyncio.run(main())
    assert joined.load_reason is None and joined.load_s == 0.0
    assert joined.pending_s == pytest.approx(LOAD - 0.05, abs=TOLERANCE) and joined.behind == ["a (cold)"]
    assert joined_ns / 1e9 == pytest.approx(LOAD - 0.05, abs=TOLERANCE)


def test_a_reload_drains_the_old_runner_and_old_option_requests_still_join_it():
    """needsReload: the old runner gets sessionDuration 0, the reload waits for its refCount to reach 0."""
    async def main():
        scheduler = Scheduler(LOAD, parallel=4)
        await run(scheduler, "a", 0.0)
        return await asyncio.gather(
            run(scheduler, "a", 0.3),  # on the old runner
            run(scheduler, "a", 0.0, after=0.05, options={"num_ctx": 8192}),  # the reload: drains the old runner
            run(scheduler, "a", 0.4, after=0.1),  # old options, during the drain: joins the old runner at once
        )
    (_, _), (reload, reload_ns), (late, late_ns) = asyncio.run(main())
    assert late.load_reason is None and late_ns / 1e9 < 0.02
    assert (reload.load_reason, reload.reload_cause) == ("reload", "num_ctx 4096 -> 8192")
    assert reload.drain_s == pytest.approx(0.45, abs=TOLERANCE)  # until the late joiner ended (0.1 + 0.4 - 0.05)
    assert reload.load_s == pytest.approx(LOAD, abs=TOLERANCE)
    assert reload_ns / 1e9 == pytest.approx(reload.drain_s + reload.load_s, abs=TOLERANCE)
    assert reload.num_ctx == 8192


def test_the_default_context_length_follows_total_vram_and_is_clamped_to_the_models_training_context():
    """server/routes.go Serve (the VRAM default), envconfig (OLLAMA_CONTEXT_LENGTH), server/sched.go effectiveContext."""
    assert [default_num_ctx(gib * GIB) for gib in (8, 22, 23, 46, 47, 80)] == [4096, 4096, 32768, 32768, 262144, 262144]
    assert default_num_ctx(80 * GIB, context_env=8192) == 8192
    assert runner_options(None, 262144, train_ctx=131072)["num_ctx"] == 131072
    assert runner_options({"num_ctx": 2}, 4096)["num_ctx"] == 4
    assert runner_options({"num_ctx": 8192, "temperature": 0.1}, 4096) == {"num_ctx": 8192}

    async def main():
        scheduler = Scheduler(0.0, total_vram=24 * GIB)
        first, _ = await run(scheduler, "a", 0.0)
        again, _ = await run(scheduler, "a", 0.0, options={"num_ctx": 32768})  # the default, asked for: no reload
        return first, again, [runner.options["num_ctx"] for runner in scheduler.resident()]
    first, again, resident = asyncio.run(main())
    assert (first.num_ctx, again.load_reason, resident) == (32768, None, [32768])


def test_keep_alive_zero_unloads_when_the_last_request_ends():
    """server/sched.go processCompleted: sessionDuration 0 expires the runner once refCount is 0."""
    async def main():
        scheduler = Scheduler(0.05)
        await run(scheduler, "a", 0.0, keep_alive=0)
        after_zero = len(scheduler.resident())
        await run(scheduler, "a", 0.0, keep_alive="5m")
        second, _ = await run(scheduler, "a", 0.0)
        return after_zero, second.load_reason, len(scheduler.resident())
    assert asyncio.run(main()) == (0, None, 1)


def test_two_names_of_one_blob_share_one_runner_listed_under_the_name_that_loaded_it():
    """server/sched.go schedulerModelKey: runners are keyed by the model's blob."""
    async def main():
        scheduler = Scheduler(LOAD)
        first, _ = await run(scheduler, "llama3.2", 0.0, key="blob-3b", name="llama3.2:latest")
        second, second_ns = await run(scheduler, "llama3.2:3b", 0.0, key="blob-3b", name="llama3.2:3b")
        return first, second, second_ns, [runner.name for runner in scheduler.resident()]
    first, second, second_ns, names = asyncio.run(main())
    assert (first.load_reason, second.load_reason, names) == ("cold", None, ["llama3.2:latest"])
    assert second_ns / 1e9 < 0.02


def test_expires_at_is_set_when_the_runner_goes_idle_and_not_before():
    """server/sched.go processCompleted sets expiresAt when refCount drops to 0; until a runner first goes idle
    it is the zero time (server/routes.go PsHandler lists it as it is), and a busy runner keeps its old one."""
    async def main():
        scheduler = Scheduler(0.05)
        seen = {}

        async def look(after: float, label: str) -> None:
            await asyncio.sleep(after)
            seen[label] = [runner.expires_at for runner in scheduler.resident()]

        await asyncio.gather(run(scheduler, "a", 0.3), look(0.15, "loading-done-busy"))
        seen["idle"] = [runner.expires_at for runner in scheduler.resident()]
        await asyncio.gather(run(scheduler, "a", 0.3, keep_alive="1h"), look(0.1, "busy-again"))
        seen["idle-again"] = [runner.expires_at for runner in scheduler.resident()]
        return seen
    seen = asyncio.run(main())
    assert seen["loading-done-busy"] == [GO_ZERO_TIME]
    (idle,) = seen["idle"]
    assert (idle - datetime.now(timezone.utc)).total_seconds() == pytest.approx(DEFAULT_KEEP_ALIVE_S, abs=2)
    assert seen["busy-again"] == [idle]  # while busy, the old expiry stays
    assert (seen["idle-again"][0] - datetime.now(timezone.utc)).total_seconds() == pytest.approx(3600, abs=2)


def residency(scheduler: Scheduler) -> list[tuple]:
    return [(event.model, event.event, event.reason, event.by, event.cause) for event in scheduler.residency]


def test_at_the_loaded_models_limit_a_load_evicts_the_idle_runner_with_the_shortest_keep_alive():
    """server/sched.go processPending (loadedCount >= maxRunners), findRunnerToUnload, ByDurationAndName."""
    async def main():
        scheduler = Scheduler(0.05)
        scheduler.max_runners = 2
        await run(scheduler, "a", 0.0, keep_alive="10m")
        await run(scheduler, "b", 0.0, keep_alive="1m")
        third, third_ns = await run(scheduler, "c", 0.0)
        return scheduler, third, third_ns
    scheduler, third, third_ns = asyncio.run(main())
    assert sorted(runner.name for runner in scheduler.resident()) == ["a", "c"]
    assert residency(scheduler) == [("a", "load", "cold", None, None), ("b", "load", "cold", None, None),
                                    ("b", "unload", "evicted", "c", None), ("c", "load", "cold", None, None)]
    assert third.load_reason == "cold" and third.evict_s < 0.02  # b was idle: unloaded at once
    times = [event.at for event in scheduler.residency]
    assert times == sorted(times)


def test_when_every_runner_is_busy_the_load_waits_for_the_shortest_to_drain_and_old_requests_still_join_it():
    """findRunnerToUnload: no idle runner, so the one with the shortest sessionDuration; processPending sets it to 0 and
    waits on unloadedCh (processCompleted unloads it when its refCount reaches 0). load_duration holds the wait."""
    async def main():
        scheduler = Scheduler(LOAD, parallel=4)
        scheduler.max_runners = 1
        await run(scheduler, "a", 0.0)
        return scheduler, await asyncio.gather(
            run(scheduler, "a", 0.3),  # busy when b's load comes
            run(scheduler, "b", 0.0, after=0.05),  # evicts a once a's requests end
            run(scheduler, "a", 0.2, after=0.1),  # joins a while it drains for b
        )
    scheduler, ((_, _), (loading, loading_ns), (late, late_ns)) = asyncio.run(main())
    assert late.load_reason is None and late_ns / 1e9 < 0.02
    assert loading.evict_s == pytest.approx(0.25, abs=TOLERANCE)  # until the late joiner ended (0.1 + 0.2 - 0.05)
    assert loading_ns / 1e9 == pytest.approx(loading.evict_s + loading.load_s, abs=TOLERANCE)
    assert residency(scheduler)[1:] == [("a", "unload", "evicted", "b", None), ("b", "load", "cold", None, None)]


def test_the_residency_log_names_reloads_with_their_cause_and_expiries_at_their_due_time():
    async def main():
        scheduler = Scheduler(0.05)
        await run(scheduler, "a", 0.0)
        await run(scheduler, "a", 0.0, options={"num_ctx": 8192}, keep_alive="0.2s")
        ended = time.time()
        await asyncio.sleep(0.3)
        scheduler.resident()  # the expiry is noticed late; it is logged at its due time
        scheduler.unload_all()
        return scheduler, ended
    scheduler, ended = asyncio.run(main())
    assert residency(scheduler) == [("a", "load", "cold", None, None), ("a", "unload", "reload", None, None),
                                    ("a", "load", "reload", None, "num_ctx 4096 -> 8192"), ("a", "unload", "expired", None, None)]
    assert scheduler.residency[-1].at == pytest.approx(ended + 0.2, abs=TOLERANCE)
