"""Usage over a month (ui/usage.py, recording.yml, the page's Usage view) against the truth it was made from.

A month of the proxy's and the collector's counters (tests/support/backfill.py: 3 hosts, one with a power meter, one
measured by its CPU and GPU and restarted on the way, one without energy; 2 models, 2 clients) is backfilled into a real Prometheus with promtool, recording.yml is evaluated over it with promtool
(``create-blocks-from rules``, every hour on the hour), and Prometheus is started again on both. Every figure of
the tables is then the sum of what the generator added: exact for the counts, to the rounding shown for seconds
and energy."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from ollama_otel_stack.stack.defaults import RECORDING_RULES
from tests.support.backfill import DAY_S, Truth, backfill, backfill_rules, write_history
from tests.support.harness import PYTHON, ROOT, copy_into, require_tool, stored_prometheus, victoria_metrics
from ui.queries import Prometheus
from ui.usage import ALL, ENERGY, RECORDS, Price, to_csv, usage

# The month's fixture (a backfill, then recording.yml evaluated hour by hour over 30 days by promtool through the
# query API) runs in its first test's time: about 4 minutes on two idle cores, past pytest's 300 s on a busy machine
# (a clean-clone run with make mutation beside it timed out in promtool's rule evaluation)
pytestmark = pytest.mark.timeout(900)

HOSTS, METERED, BY_PARTS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"], ["10.0.0.1"], ["10.0.0.3"]
MODELS, CLIENTS = ["llama3.2:1b", "qwen3:8b"], ["open-webui", "claude-code"]
DAYS = 30


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> Iterator[tuple[Prometheus, Truth, int]]:
    """The month, recorded; the last of its days is yesterday (UTC)."""
    promtool = require_tool("promtool")
    directory = tmp_path_factory.mktemp("month")
    start = (int(time.time()) // DAY_S - DAYS) * DAY_S
    truth = write_history(directory / "history.om", start, DAYS, HOSTS, MODELS, CLIENTS, metered=METERED, by_parts=BY_PARTS)
    data = directory / "data"
    backfill(promtool, directory / "history.om", data)
    with stored_prometheus(data) as prom:
        # to an hour past the end: the last hour is recorded within the hour after it
        backfill_rules(promtool, prom.url, RECORDING_RULES, start, start + DAYS * DAY_S + 3600, directory / "rules")
    for block in (directory / "rules").iterdir():
        shutil.move(str(block), data / block.name)
    with stored_prometheus(data) as prom:
        yield Prometheus(prom.url), truth, start


def expected(truth: Truth, by: str, start: int, days: int, period, metered: bool = True) -> dict[tuple[str, str], dict]:
    """The rows as they must come out: each figure summed over the period's days, energy shared by generation time."""
    table = truth.by_model if by == "model" else truth.by_client
    seconds = truth.seconds if by == "model" else truth.client_seconds
    rows: dict[tuple[str, str], dict] = defaultdict(lambda: defaultdict(float))
    for (day, key), figures in table.items():
        if not start <= day < start + days * DAY_S or not figures["requests"]:
            continue
        for name in ("requests", "input_tokens", "output_tokens", "generation_s"):
            rows[(period(day), key)][name] += figures[name]
            rows[(period(day), ALL)][name] += figures[name]
    for (day, host), joules in truth.joules.items():
        if not start <= day < start + days * DAY_S:
            continue
        busy = sum(spent for (d, h, _), spent in seconds.items() if d == day and h == host)
        rows[(period(day), ALL)]["joules"] += joules
        for (d, h, key), spent in seconds.items():
            if d == day and h == host and busy:
                rows[(period(day), key)]["joules"] += joules * spent / busy
    return rows


def day_of(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day))


def compare(rows: list[dict], want: dict[tuple[str, str], dict], by: str) -> None:
    got = {(row["period"], row[by]): row for row in rows}
    assert set(got) == set(want), (sorted(set(got) ^ set(want)))
    for key, figures in want.items():
        row = got[key]
        assert [row[name] for name in ("requests", "input_tokens", "output_tokens")] == [round(figures[name]) for name in ("requests", "input_tokens", "output_tokens")], (key, row, figures)
        assert row["generation_s"] == pytest.approx(figures["generation_s"], abs=0.051), (key, row)
        kwh = figures["joules"] / 3.6e6
        assert row["energy_kwh"] == pytest.approx(kwh, abs=1e-6), (key, row, kwh)
        assert row["output_tokens_per_kwh"] == (pytest.approx(figures["output_tokens"] / kwh, abs=1) if kwh else None), (key, row)


@pytest.mark.parametrize("by", ["model", "client"])
def test_each_day_of_the_month_is_what_was_added_that_day(month, by):
    prom, truth, start = month
    rows = usage(prom, by, DAYS, "day", now=start + DAYS * DAY_S - 1)
    compare(rows, expected(truth, by, start, DAYS, day_of), by)
    assert len({row["period"] for row in rows}) == DAYS and "cost_EUR" not in rows[0]  # no price given: no cost column


def test_weeks_and_months_are_sums_of_their_days(month):
    prom, truth, start = month

    def week_of(day: int) -> str:
        weekday = time.gmtime(day).tm_wday
        return day_of(day - weekday * DAY_S)

    def month_of(day: int) -> str:
        return time.strftime("%Y-%m", time.gmtime(day))

    for per, period in (("week", week_of), ("month", month_of)):
        compare(usage(prom, "model", DAYS, per, now=start + DAYS * DAY_S - 1), expected(truth, "model", start, DAYS, period), "model")


def test_a_price_gives_a_cost_column_and_a_host_without_a_meter_has_no_energy_columns(month):
    prom, truth, start = month
    now = start + DAYS * DAY_S - 1
    priced = usage(prom, "model", 7, "day", price=Price(0.25, "EUR"), now=now)
    assert all(row["cost_EUR"] == round(row["energy_kwh"] * 0.25, 4) for row in priced), priced[:3]
    unmetered = usage(prom, "client", 7, "day", host="10.0.0.2", price=Price(0.25, "EUR"), now=now)
    assert unmetered and {"energy_kwh", "output_tokens_per_kwh", "cost_EUR"}.isdisjoint(unmetered[0]), unmetered[0]
    # that host's own counts, and only its own
    cutoff = start + (DAYS - 7) * DAY_S
    want = sum(requests for (day, host), requests in truth.host_requests.items() if host == "10.0.0.2" and day >= cutoff)
    assert sum(row["requests"] for row in unmetered if row["client"] == ALL) == round(want) > 0


def test_a_host_measured_by_its_parts_has_their_sum_across_a_restart_of_each(month):
    """The CPU's counter starts again from zero on day 15 and the proxy's on day 20: each day is still what was added."""
    prom, truth, start = month
    rows = usage(prom, "model", DAYS, "day", host="10.0.0.3", now=start + DAYS * DAY_S - 1)
    joules = {day_of(day): spent for (day, host), spent in truth.joules.items() if host == "10.0.0.3"}
    requests = {day_of(day): count for (day, host), count in truth.host_requests.items() if host == "10.0.0.3"}
    got = {row["period"]: row for row in rows if row["model"] == ALL}
    assert set(got) == set(joules) and len(got) == DAYS
    for day, row in got.items():
        assert row["energy_kwh"] == pytest.approx(joules[day] / 3.6e6, abs=1e-6), day
        assert row["requests"] == round(requests[day]), day


def test_the_command_line_csv_is_the_pages_table(month, monkeypatch):
    prom, _, _ = month
    done = subprocess.run([PYTHON, "-m", "ui.usage", "--since", "30d", "--csv", "--by", "client", "--prometheus", prom.url,
                           "--price-per-kwh", "0.3", "--currency", "EUR"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from_cli = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(from_cli) > 20 and list(from_cli[0]) == ["period", "client", "requests", "input_tokens", "output_tokens", "generation_s",
                                                        "energy_kwh", "output_tokens_per_kwh", "cost_EUR"], from_cli[0]
    for name, value in {"PROMETHEUS_URL": prom.url, "USAGE_PRICE_PER_KWH": "0.3", "USAGE_CURRENCY": "EUR"}.items():
        monkeypatch.setenv(name, value)
    app = AppTest.from_file(str(ROOT / "ui" / "streamlit_app.py"), default_timeout=60)
    app.run()
    app.sidebar.radio[0].set_value("Usage").run()
    assert not app.exception, [e.message for e in app.exception]
    shown = app.dataframe[1].value  # by model, then by client
    as_text = list(csv.DictReader(io.StringIO(to_csv(shown.where(shown.notna(), None).to_dict("records")))))
    assert as_text == from_cli
    refused = subprocess.run([PYTHON, "-m", "ui.usage", "--price-per-kwh", "0.3"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin"})
    assert refused.returncode == 2 and "a price per kWh needs its currency" in refused.stderr


def test_a_long_term_store_given_the_month_shows_the_same_usage(month, monkeypatch):
    """docs/fleet.md: a store Prometheus remote-writes to (VictoriaMetrics) holds only what was scraped since; the past
    is copied in (here every recorded sample, through the two query and import APIs). Pointed at the store, the tables
    are Prometheus' to the digit, equal to the generator's truth, and the page's Usage view shows them."""
    prom, truth, start = month
    now = start + DAYS * DAY_S - 1
    records = sorted({record.split("{")[0] for table in RECORDS.values() for record in table.values()} | {ENERGY})
    with victoria_metrics() as store:
        assert copy_into(store, prom.url, records, now + DAY_S, 40) > 10_000
        stored = Prometheus(store.url)
        counts = [f"sum(count_over_time({record}[40d]))" for record in records]  # every recorded sample: the import's last arrived
        deadline = time.monotonic() + 60
        while [stored.scalar(count, now + DAY_S) for count in counts] != [prom.scalar(count, now + DAY_S) for count in counts]:
            assert time.monotonic() < deadline, (records, [stored.scalar(c, now + DAY_S) for c in counts], [prom.scalar(c, now + DAY_S) for c in counts])
            time.sleep(0.5)
        for by in ("model", "client"):
            for per in ("day", "week"):
                there, here = usage(stored, by, DAYS, per, now=now), usage(prom, by, DAYS, per, now=now)
                assert there == here, (by, per, [(a[by], a["period"], name, a[name], b.get(name)) for a, b in zip(there, here) if a != b for name in a if a[name] != b.get(name)])
        compare(usage(stored, "client", DAYS, "day", now=now), expected(truth, "client", start, DAYS, day_of), "client")
        priced = usage(stored, "model", 7, "day", host="10.0.0.1", price=Price(0.25, "EUR"), now=now)
        assert priced == usage(prom, "model", 7, "day", host="10.0.0.1", price=Price(0.25, "EUR"), now=now) and priced[0]["cost_EUR"] > 0
        monkeypatch.setenv("PROMETHEUS_URL", store.url)
        app = AppTest.from_file(str(ROOT / "ui" / "streamlit_app.py"), default_timeout=60)
        app.run()
        app.sidebar.radio[0].set_value("Usage").run()
        assert not app.exception, [e.message for e in app.exception]
        shown = app.dataframe[1].value  # by client, the last 30 days to today
        assert to_csv(shown.where(shown.notna(), None).to_dict("records")) == to_csv(usage(prom, "client", DAYS, "day"))


def test_the_traffic_of_a_minute_ago_is_counted_before_any_hour_is_recorded(tmp_path):
    """A new user's first look: `make up`, some traffic, `python -m ui.usage --since 1d`. No hourly record holds it
    yet (recording.yml writes each hour within the next); the raw counters' rise since the last one does, exactly."""
    from tests.support.harness import configure_fake, fake_ollama, otel_proxy, prometheus, until

    with fake_ollama(token_delay=0.001, load_delay=0.05) as fake, otel_proxy(fake.url) as proxy, \
            prometheus({"otel-proxy": [f"127.0.0.1:{proxy.port}"]}) as prom:
        configure_fake(fake, reset_stats=True)
        for index in range(6):
            model = ("llama3.2:1b", "phi3:mini")[index % 2]
            body = {"model": model, "prompt": "why is the sky blue " * (index + 1), "stream": index % 3 == 0, "options": {"num_predict": 5 + index}}
            httpx.post(proxy.url + "/api/generate", json=body, headers={"X-Client-Name": CLIENTS[index % 2]}, timeout=30).raise_for_status()
        truth = httpx.get(fake.url + "/fake/stats").json()["by_model"]
        client = Prometheus(prom.url)
        until(lambda: client.scalar('sum(ollama_generated_tokens_total{job="otel-proxy"})') == sum(t["generated_tokens"] for t in truth.values()))
        done = subprocess.run([PYTHON, "-m", "ui.usage", "--since", "1d", "--csv", "--prometheus", prom.url], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shown: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in csv.DictReader(io.StringIO(done.stdout)):  # today's row (and yesterday's, past midnight UTC)
        for index, name in enumerate(("requests", "input_tokens", "output_tokens")):
            shown[row["model"]][index] += int(row[name])
    assert {model: figures for model, figures in shown.items() if model != ALL} == {
        model: [int(t["requests"]), int(t["prompt_tokens"]), int(t["generated_tokens"])] for model, t in truth.items()}, done.stdout
