"""ui/residency.py: the grid the timeline is read on (its reading of the samples: tests/e2e/ui/test_residency.py)."""

from __future__ import annotations

from ui import residency
from ui.queries import Filters


class Asked:
    """A Prometheus that answers nothing and keeps the ranges it was asked for."""

    def __init__(self) -> None:
        self.ranges: set[tuple[float, float, float]] = set()

    def range(self, promql: str, start: float, end: float, step: float) -> list:
        self.ranges.add((start, end, step))
        return []

    def side_by_side(self, calls: dict) -> dict:
        return {name: call() for name, call in calls.items()}


def test_a_range_redrawn_a_moment_later_is_read_on_the_same_grid():
    """The page's last hour at 5 s steps, read at 10:00:01.3 and again 2.4 s later: the steps fall on whole multiples
    of 5 s both times, so the bars drawn from them do not move between reruns."""
    steps = []
    for now in (36001.3, 36003.7):
        prom = Asked()
        residency.timeline(prom, Filters(), now - 3600, now, residency.step_for(3600))  # type: ignore[arg-type]
        # the loads counter is read from the step before the first, for the rise in the first
        (samples, loads) = sorted(prom.ranges, reverse=True)
        assert samples[1:] == (36000.0, 5) and loads == (samples[0] - 5, 36000.0, 5)
        steps.append(samples[0])
    assert steps == [32405.0, 32405.0]


def test_a_load_counted_before_the_collector_listed_its_model_begins_that_stay():
    """The proxy counts a load as its request ends, scraped a step later at most; the collector's /api/ps reading of
    the same model can come two steps and the step it falls in after it. Within that, the load began the stay; a load
    counted earlier than that, or a stay begun later, is not matched."""
    step = 0.5
    stays = [residency.Stay("h", "a", 10.0, 12.0), residency.Stay("h", "a", 20.0, 22.0), residency.Stay("h", "b", 30.0, 31.0), residency.Stay("h", "c", 40.0, 45.0),
             residency.Stay("h", "d", 50.0, 55.0)]
    loads = [residency.Load("h", "a", 8.5, "cold", None, 1),  # listed three steps later: began the first stay
             residency.Load("h", "a", 18.5, "cold", None, 1),  # the first stay long gone: began the second
             residency.Load("h", "b", 28.0, "cold", None, 1),  # four steps before b was listed: not its load
             residency.Load("h", "c", 42.0, "reload", "num_ctx", 1),  # counted while c was listed
             residency.Load("h", "d", 48.5, "cold", None, 1),  # a stay of d too short for the samples, just before...
             residency.Load("h", "d", 50.0, "cold", None, 1)]  # ...the one this load began
    residency._explain(stays, loads, {}, 0.0, 100.0, step)
    assert [(s.model, s.loaded, s.cause, s.loads) for s in stays] == [
        ("a", "cold", None, []), ("a", "cold", None, []), ("b", residency.NOT_SEEN, None, []), ("c", "reload", "num_ctx", []), ("d", "cold", None, [])]
