"""The residency timeline (ui/residency.py) against the fake's own record of every load and unload
(tests/fake/scheduler.py ``Residency``), through the proxy, the hardware collector and a real Prometheus; and the
page's Residency view drawn from the same series."""

from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pyarrow
import pytest
from streamlit.testing.v1 import AppTest

from ollama_otel_stack.stack.defaults import RECORDING_RULES
from otel_proxy.scheduling import changed_options
from tests.support import backfill
from tests.support.backfill import DAY_S, HOUR_S
from tests.support.harness import ROOT, configure_fake, fake_ollama, hw_collector, otel_proxy, prometheus, require_tool, stored_prometheus, until
from ui import residency
from ui.queries import Filters, Prometheus

SAMPLE_S = 0.5  # the collector's interval, the scrape's and the timeline's step
LAG_S = 4 * SAMPLE_S  # a stay's ends against the truth: a reading, its scrape and the step behind, and the machine's jitter
ENDED = {"evicted": residency.EVICTED, "reload": residency.RELOADED, "expired": residency.EXPIRED, "unloaded": residency.UNLOADED}


def ask(proxy_url: str, model: str, **body: object) -> None:
    options = {"num_predict": 3, **body.pop("options", {})}  # type: ignore[dict-item]
    answer = httpx.post(proxy_url + "/api/generate", json={"model": model, "prompt": "hi", "stream": False, "options": options, **body}, timeout=60)
    answer.raise_for_status()


def listed_since(prom: Prometheus, model: str, since: float) -> float:
    """When Prometheus first stored a sample listing ``model`` as loaded after ``since`` (its scrape's time):
    the collector has read /api/ps since the load, and been scraped."""
    def latest() -> float | None:
        at = prom.scalar(f'max(timestamp(ollama_loaded_model_size_bytes{{model="{model}"}}))')
        return at if at is not None and at > since else None

    return until(latest)


def on_grid_past(at: float, step: float) -> None:
    """Waits until the last multiple of ``step`` before now is at or past ``at``: a timeline read now on that grid
    (ui/residency.py reads whole multiples of its step) has a step that sees what was stored at ``at``."""
    until(lambda: time.time() // step * step >= at, deadline_s=step + 30)


def stays_in_truth(events: list[dict]) -> list[dict]:
    """The fake's loads and unloads paired into stays, each with how it began and how it ended."""
    stays: list[dict] = []
    for event in events:
        if event["event"] == "load":
            stays.append({"model": event["model"], "start": event["at"], "loaded": event["reason"], "cause": changed_options(event["cause"]),
                          "end": None, "ended": residency.RESIDENT, "by": None})
        else:
            (stay,) = [stay for stay in stays if stay["model"] == event["model"] and stay["end"] is None]
            stay.update(end=event["at"], ended=ENDED[event["reason"]], by=event["by"])
    return stays


def test_the_timeline_shows_each_load_and_why_each_model_went(tmp_path, monkeypatch):
    with (
        # a load takes 2 s, so a reload's gap (the old runner gone, the new one loading) spans four samples: a gap of
        # one or two, on a busy machine, can fall between the collector's readings (the stay's loads hold it then)
        fake_ollama(load_delay=2.0) as fake,
        otel_proxy(fake.url) as proxy,
        hw_collector(fake.url, "--interval", str(SAMPLE_S), "--sysfs-root", str(tmp_path)) as collector,
        prometheus({"otel-proxy": [f"127.0.0.1:{proxy.port}"], "hw-collector": [f"127.0.0.1:{collector.port}"]}, scrape_interval="500ms") as prom,
    ):
        configure_fake(fake, max_loaded_models=1)  # OLLAMA_MAX_LOADED_MODELS=1: each other model's load evicts the one loaded
        began = time.time()
        ask(proxy.url, "llama3.2:1b")
        time.sleep(3)
        ask(proxy.url, "phi3:mini")  # pushes llama3.2:1b out
        time.sleep(3)
        ask(proxy.url, "phi3:mini", options={"num_ctx": 8192})  # a reload: the old runner drains, unloads, the new loads
        time.sleep(3)
        ask(proxy.url, "qwen2.5:7b", keep_alive="2s")  # pushes phi3:mini out, then expires
        time.sleep(4)
        asked = time.time()
        ask(proxy.url, "llama3.2:1b")  # nothing to push out: qwen2.5:7b has gone
        listed_at = listed_since(Prometheus(prom.url), "llama3.2:1b", asked)
        on_grid_past(listed_at, SAMPLE_S)  # the timeline's last step lists it: resident
        ended = time.time()
        truth = stays_in_truth(httpx.get(fake.url + "/fake/residency").json())
        stays, loads = residency.timeline(Prometheus(prom.url), Filters(), began - 1, ended, step=SAMPLE_S)

        # the scenario did what it meant to: every way a stay begins and ends, once or more
        assert [(t["model"], t["loaded"], t["ended"], t["by"]) for t in truth] == [
            ("llama3.2:1b", "cold", residency.EVICTED, "phi3:mini"), ("phi3:mini", "cold", residency.RELOADED, None),
            ("phi3:mini", "reload", residency.EVICTED, "qwen2.5:7b"), ("qwen2.5:7b", "cold", residency.EXPIRED, None),
            ("llama3.2:1b", "cold", residency.RESIDENT, None)]
        assert [(s.model, s.loaded, s.cause, s.ended, s.by) for s in stays] == [(t["model"], t["loaded"], t["cause"], t["ended"], t["by"]) for t in truth]
        for stay, true in zip(stays, truth):
            assert true["start"] - 0.05 <= stay.start <= true["start"] + LAG_S, (stay, true)
            if true["end"] is not None:
                assert true["end"] - LAG_S <= stay.end <= true["end"] + LAG_S, (stay, true)
        assert {(load.model, load.reason, load.cause) for load in loads} == {(t["model"], t["loaded"], t["cause"]) for t in truth}
        assert sum(load.count for load in loads) == len(truth)

        # the page: the Residency view over the last hour (a 5 s step, too coarse for this scenario's gaps of seconds, so it is
        # held to what the timeline reads at that step) draws one bar a stay and says in words why each went
        monkeypatch.setenv("PROMETHEUS_URL", prom.url)
        on_grid_past(listed_at, residency.step_for(3600))  # the page's last step, and this test's, list the last stay
        app = AppTest.from_file(str(ROOT / "ui" / "streamlit_app.py"), default_timeout=60)
        app.run()
        app.sidebar.radio[0].set_value("Residency").run()
        app.radio[0].set_value("last hour").run()
        shown_at = time.time()
        assert not app.exception, [e.message for e in app.exception]
        hour, _ = residency.timeline(Prometheus(prom.url), Filters(), shown_at - 3600, shown_at, residency.step_for(3600))
        assert hour, "nothing resident in the last hour"
        (chart,) = app.get("vega_lite_chart")
        spec = json.loads(chart.proto.spec)
        assert spec["mark"]["type"] == "bar" and spec["encoding"]["x2"]["field"] == "to"  # a bar from each stay's first sample to its last
        bars = pyarrow.ipc.open_stream(chart.proto.datasets[0].data.data).read_all().to_pandas()
        assert list(zip(bars["model"], bars["ended"])) == [(stay.model, stay.ended) for stay in hour]
        resident = [stay.ended == residency.RESIDENT for stay in hour]
        assert any(resident) and all(bars["to"][resident] <= datetime.fromtimestamp(shown_at, timezone.utc))  # not past now
        lines = app.dataframe[0].value
        # the events of the stays above, newest first by the page's own times (the page read its timeline a moment
        # before this test's, on a 5 s grid of its own: two events a few seconds apart may be timed either way round)
        assert sorted(zip(lines["model"], lines["event"])) == sorted((line["model"], line["event"]) for line in residency.events(hour))
        assert list(lines["at"]) == sorted(lines["at"], reverse=True)
        assert lines["event"].iloc[0] == "cold load" and lines["model"].iloc[0] == "llama3.2:1b"


def test_how_a_stay_ended_is_read_from_the_samples_around_it():
    """The rules of ui/residency.py on samples set exactly (step 10 s): an expiry within the samples' lag, a load of
    another model within a load's time, a reload of the same model, none of them, and still listed at the end."""
    step = 10.0
    stays = [residency.Stay("h", "a", 0, 100), residency.Stay("h", "b", 130, 200), residency.Stay("h", "b", 240, 300, loaded="reload", cause="num_ctx"),
             residency.Stay("h", "c", 310, 400), residency.Stay("h", "d", 600, 700), residency.Stay("h", "e", 900, 1000)]
    expiries = {("h", "c"): [(390, 395.0)], ("h", "d"): [(690, 2000.0)], ("h", "a"): [(80, 5.0)]}  # a: an old expiry, from before it was busy
    residency._explain(stays, [], expiries, 0, 1000, step)
    assert [(s.model, s.ended, s.by) for s in stays] == [
        ("a", residency.EVICTED, "b"), ("b", residency.RELOADED, None), ("b", residency.EVICTED, "c"), ("c", residency.EXPIRED, None),
        ("d", residency.UNLOADED, None), ("e", residency.RESIDENT, None)]
    assert [s.loaded for s in stays] == [residency.BEFORE, residency.NOT_SEEN, "reload", residency.NOT_SEEN, residency.NOT_SEEN, residency.NOT_SEEN]
    assert residency.step_for(3600) == 5 and residency.step_for(30 * 86400) == 3600 and residency.step_for(3) == 0.5
    # samples 2 min apart, keep_alive 5 min: an expiry within the lag of the departure is one only if no load explains it
    step = 120.0
    pushed, pusher = residency.Stay("h", "a", 0, 7200), residency.Stay("h", "b", 7260, 9000)
    lone = residency.Stay("h", "c", 20000, 27200)
    late = residency.Stay("h", "d", 30000, 37200)
    after = residency.Stay("h", "e", 37260, 40000)
    stays = [pushed, pusher, lone, late, after]
    residency._explain(stays, [], {("h", "a"): [(7200, 7500.0)], ("h", "c"): [(27200, 27500.0)], ("h", "d"): [(37200, 37150.0)]}, 0, 40000, step)
    assert [(s.model, s.ended, s.by) for s in stays] == [
        ("a", residency.EVICTED, "b"), ("b", residency.UNLOADED, None), ("c", residency.EXPIRED, None),
        ("d", residency.EXPIRED, None), ("e", residency.RESIDENT, None)]


def test_loads_are_the_counters_rise_in_each_step_from_zero_where_it_was_new_or_reset():
    step, start = 10.0, 100.0
    points = [(90.0, 3.0), (100.0, 3.0), (110.0, 5.0), (140.0, 1.0), (150.0, 1.0), (160.0, 0.0), (170.0, 2.0)]
    # 90: the base before the range; 110: +2; 140: back after a gap (a restart): 1 from zero; 170: +2 after a fall to 0
    assert residency._counted(points, step, start) == [(110.0, 2), (140.0, 1), (170.0, 2)]
    assert residency._counted([(100.0, 4.0)], step, start) == [(100.0, 4)]  # born in the range's first step


def test_days_read_from_the_hourly_records_equal_the_samples_and_the_history():
    """Eight days on two hosts, backfilled into a real Prometheus with the hourly records of recording.yml evaluated by
    promtool over all but the first and the last day: the timeline at hourly steps reads the records where they are
    and the samples around them, and comes out the same as from the samples alone, and as the history was written."""
    promtool = require_tool("promtool")
    now = int(time.time())
    start = (now // DAY_S - 8) * DAY_S
    at = lambda hours: start + hours * HOUR_S  # noqa: E731
    hour = now // HOUR_S * HOUR_S  # the hour now is in began
    a, b = "10.0.0.1", "10.0.0.2"
    history = [
        backfill.Stay(a, "llama3.2:1b", at(2), at(30), expires=at(35)),  # evicted by phi3:mini's load
        backfill.Stay(a, "phi3:mini", at(30), at(50), expires=at(50)),  # its keep_alive ran out
        backfill.Stay(a, "llama3.2:1b", at(60), at(100), expires=at(105)),  # reloaded within the hour: one stay, two loads
        backfill.Stay(a, "llama3.2:1b", at(100), at(140), loaded="reload", cause="num_ctx", expires=at(150)),  # evicted by qwen
        backfill.Stay(a, "qwen2.5:7b", at(140), now),
        backfill.Stay(b, "phi3:mini", at(10), at(70), expires=at(90)),  # went with nothing loaded beside it: ollama stop
        backfill.Stay(b, "phi3:mini", at(80), at(120), expires=at(120)),
        # b's proxy restarted at 121:10, its counters from zero: phi3:mini's falls from 2, and its next load, at 121:20, is
        # 1 where the hour before read 2 (recording.yml's restart branch: the count since the restart)
        backfill.Stay(b, "phi3:mini", at(121) + 1200, at(125), expires=at(125)),
        backfill.Stay(b, "gemma3:4b", at(150), now),
        backfill.Stay(b, "mistral:7b", hour - 5 * HOUR_S, hour - HOUR_S // 2, expires=hour - HOUR_S // 2),  # went in the last whole hour
    ]
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        backfill.write_residency(work / "residency.om", history, now, restarts={b: [at(121) + 600]})
        backfill.backfill(promtool, work / "residency.om", work / "data")
        recorded_from, recorded_to = start + DAY_S, (now // HOUR_S) * HOUR_S - DAY_S
        with stored_prometheus(work / "data") as server:
            placed = backfill.backfill_rules(promtool, server.url, RECORDING_RULES, recorded_from, recorded_to, work / "rules")
        for block in (work / "rules").iterdir():
            block.rename(work / "data" / block.name)
        with stored_prometheus(work / "data") as server:
            prom = Prometheus(server.url)
            # the records were evaluated where the backfill placed the group in the hour, as a live Prometheus would
            raw = httpx.get(f"{server.url}/api/v1/query", params={"query": "ollama:model_resident:max1h[3h]", "time": recorded_from + 3 * HOUR_S}).json()
            evaluated = sorted({t for series in raw["data"]["result"] for t, _ in series["values"]})
            assert evaluated == pytest.approx([recorded_from + hours * HOUR_S + placed["ollama-residency"] for hours in range(3)], abs=0.001)
            assert backfill.EVALUATION_OFFSET_S <= placed["ollama-residency"] < backfill.EVALUATION_OFFSET_S + 60
            asked: list[tuple[str, float, float]] = []
            sent = prom.range
            prom.range = lambda promql, begin, end, step: asked.append((promql, begin, end)) or sent(promql, begin, end, step)  # type: ignore[method-assign]
            recorded = residency.timeline(prom, Filters(), start, now, HOUR_S)
            from_records = [(begin, end) for promql, begin, end in asked if "ollama:model_resident:max1h" in promql]
            from_samples = sorted((begin, end) for promql, begin, end in asked if "ollama_loaded_model_size_bytes" in promql)
            asked.clear()
            sampled = residency.timeline(prom, Filters(), start, now, HOUR_S, recorded=False)
            assert [promql for promql, _, _ in asked if ":max1h" in promql or ":increase1h" in promql] == []
            by_host = residency.timeline(prom, Filters(host=b), start, now, HOUR_S)
    step = HOUR_S
    # the records were read for the hours they hold (promtool evaluates from --start to the hour before --end), the
    # samples for the first day and for the last, not recorded yet
    assert from_records == [(start + step + residency.RECORDED_BY, -(-now // step) * step + residency.RECORDED_BY)]
    assert from_samples == [(start + step, recorded_from - step), (recorded_to, -(-now // step) * step)]

    def seen(timeline: tuple[list[residency.Stay], list[residency.Load]]) -> list[tuple]:
        stays, loads = timeline
        return [(s.host, s.model, s.start, s.end, s.loaded, s.cause, s.ended, s.by, [(x.at, x.reason, x.cause) for x in s.loads]) for s in stays] + loads

    assert seen(recorded) == seen(sampled)
    stays, loads = recorded
    # each sample at or after the hour starts a window ending at the next: a stay from hh:00 runs from that point
    assert [(s.host, s.model, s.start, s.end, s.loaded, s.cause, s.ended, s.by) for s in stays] == [
        (a, "llama3.2:1b", at(2), at(30), "cold", None, residency.EVICTED, "phi3:mini"),
        (b, "phi3:mini", at(10), at(70), "cold", None, residency.UNLOADED, None),
        (a, "phi3:mini", at(30), at(50), "cold", None, residency.EXPIRED, None),
        (a, "llama3.2:1b", at(60), at(140), "cold", None, residency.EVICTED, "qwen2.5:7b"),
        (b, "phi3:mini", at(80), at(120), "cold", None, residency.EXPIRED, None),
        (b, "phi3:mini", at(122), at(125), "cold", None, residency.EXPIRED, None),  # its first sample in the hour to 122:00
        (a, "qwen2.5:7b", at(140), -(-now // step) * step, "cold", None, residency.RESIDENT, None),
        (b, "gemma3:4b", at(150), -(-now // step) * step, "cold", None, residency.RESIDENT, None),
        (b, "mistral:7b", hour - 5 * HOUR_S, hour, "cold", None, residency.EXPIRED, None),  # not listed in the hour now is in
    ]
    assert [(x.at, x.reason, x.count) for x in loads if x.host == b and x.model == "phi3:mini"] == [  # the third: after the restart
        (at(10), "cold", 1), (at(80), "cold", 1), (at(122), "cold", 1)]
    assert [(x.at, x.reason, x.cause) for x in stays[3].loads] == [(at(100), "reload", "num_ctx")]
    assert sorted((x.host, x.model, x.at, x.reason, x.cause, x.count) for x in loads) == sorted(  # each at the end of its hour step
        (s.host, s.model, -(-s.since // HOUR_S) * HOUR_S, s.loaded, s.cause, 1) for s in history)
    assert seen(by_host) == seen(([s for s in stays if s.host == b], [x for x in loads if x.host == b]))
