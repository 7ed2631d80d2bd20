"""Usage over days, weeks and months, by model or by client: requests, tokens, generation time, energy and cost.

Read from recording.yml's hourly increases, so 90 days cost Prometheus 2,160 points a series. Each record holds
the last whole clock hour before it was evaluated, and Prometheus evaluates the group at an offset within the hour,
so a day (UTC) is the sum of the 24 records taken from its 01:00 to the next day's 01:00 (``sum_over_time(...[1d])``
a moment before that), a week (Monday to Sunday) and a month the sums of their days. The hour or two since the last
record (all of the range, where no record is written yet) is read from the raw counters the records are made of,
their exact rise: today counts up to now.

Energy is what a power source measured on each host (recording.yml: the whole system where a meter reads it, else
the parts measured). Each row's share of it is its share of that host's generation time that day, and a period's
``all`` row holds every joule measured, idle time included. With no power source there are no energy columns (no
data, never zero); cost is there only when a price per kWh is given, in the currency given with it.

    python -m ui.usage --since 30d --csv [--by model|client] [--per day|week|month] [--price-per-kwh 0.30 --currency EUR]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import io
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ui import settings
from ui.queries import RECORDED_BY, Prometheus, PrometheusError, quote_label

DAY_S = 86400
PERIODS = ("day", "week", "month")
ALL = "all"
# what each table reads: figure -> recorded series (recording.yml)
RECORDS = {
    "model": {
        "requests": "ollama:requests:increase1h",
        "input_tokens": "ollama:input_tokens:increase1h",
        "output_tokens": "ollama:output_tokens:increase1h",
        "generation_s": "ollama:request_seconds:increase1h",
    },
    "client": {
        "requests": "ollama:client_requests:increase1h",
        "input_tokens": 'ollama:client_tokens:increase1h{gen_ai_token_type="input"}',
        "output_tokens": 'ollama:client_tokens:increase1h{gen_ai_token_type="output"}',
        "generation_s": "ollama:client_request_seconds:increase1h",
    },
}
LABEL = {"model": "gen_ai_request_model", "client": "ollama_client"}
# the raw counters each record is made from (recording.yml), read for the hour or two not recorded yet
RAW = {
    "model": {
        "requests": 'gen_ai_server_request_duration_seconds_count{job="otel-proxy"}',
        "input_tokens": 'ollama_prompt_tokens_total{job="otel-proxy"}',
        "output_tokens": 'ollama_generated_tokens_total{job="otel-proxy"}',
        "generation_s": 'gen_ai_server_request_duration_seconds_sum{job="otel-proxy"}',
    },
    "client": {
        "requests": 'ollama_client_requests_total{job="otel-proxy"}',
        "input_tokens": 'ollama_client_tokens_total{job="otel-proxy", gen_ai_token_type="input"}',
        "output_tokens": 'ollama_client_tokens_total{job="otel-proxy", gen_ai_token_type="output"}',
        "generation_s": 'ollama_client_request_duration_seconds_sum{job="otel-proxy"}',
    },
}
ENERGY = "ollama:energy_joules:increase1h"
RAW_ENERGY = ('hw_energy_joules_total{job="hw-collector", hw_type="system"}', 'hw_energy_joules_total{job="hw-collector"}')  # the whole system, else the parts
HOUR_S = 3600
COUNTS = ("requests", "input_tokens", "output_tokens")


@dataclass(frozen=True)
class Price:
    per_kwh: float
    currency: str


def _selector(record: str, host: str) -> str:
    if not host:
        return record
    matcher = f'host="{quote_label(host)}"'
    return record[:-1] + f",{matcher}}}" if record.endswith("}") else record + "{" + matcher + "}"


def day_ends(days: int, now: float) -> list[float]:
    """The ends (UTC midnights) of the last ``days`` days, today's the coming midnight."""
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return [(today + dt.timedelta(days=offset + 1)).timestamp() for offset in range(-days + 1, 1)]


@functools.lru_cache(maxsize=4096)  # asked for every point of every series: at a fleet's size, hundreds of thousands of times
def _period(day_end: float, per: str) -> str:
    day = dt.datetime.fromtimestamp(day_end - DAY_S, dt.timezone.utc).date()
    if per == "week":
        return (day - dt.timedelta(days=day.weekday())).isoformat()  # the Monday it starts on
    if per == "month":
        return day.strftime("%Y-%m")
    return day.isoformat()


def _daily(prom: Prometheus, promql: str, days: int, now: float) -> list[tuple[dict[str, str], float, float]]:
    """(labels, day end, value) for each day a series has a value: its records of the hours that end in the day,
    taken up to an hour after the day's end (``RECORDED_BY``)."""
    ends = day_ends(days, now)
    return [(series.labels, round(at - RECORDED_BY), value)
            for series in prom.range(promql, ends[0] + RECORDED_BY, ends[-1] + RECORDED_BY, DAY_S) for at, value in series.points if value is not None]


def usage(prom: Prometheus, by: str, days: int, per: str = "day", host: str = "", price: Price | None = None, now: float | None = None) -> list[dict]:
    """The table: one row per period and model (or client), then the period's ``all`` row; oldest period first."""
    return tables(prom, (by,), days, per, host, price, now)[by]


def tables(prom: Prometheus, bys: Sequence[str], days: int, per: str = "day", host: str = "", price: Price | None = None,
           now: float | None = None) -> dict[str, list[dict]]:
    """``usage`` by each of ``bys`` (model, client), their queries sent side by side and the energy read once."""
    if not set(bys) <= set(RECORDS) or per not in PERIODS:
        raise ValueError(f"by is one of {sorted(RECORDS)}, per one of {PERIODS}")
    now = dt.datetime.now(dt.timezone.utc).timestamp() if now is None else now
    promql = {(by, figure): f"sum by ({'host, ' if figure == 'generation_s' else ''}{LABEL[by]}) (sum_over_time({_selector(record, host)}[1d]))"
              for by in bys for figure, record in RECORDS[by].items()}  # the host only where energy is shared out by it
    promql[("", "energy")] = f"sum by (host) (sum_over_time({_selector(ENERGY, host)}[1d]))"
    daily = prom.side_by_side({name: (lambda q=q: _daily(prom, q, days, now)) for name, q in promql.items()})  # each independent of the others
    last_day = max((day for points in daily.values() for _, day, _ in points), default=None)
    for name, points in _unrecorded(prom, bys, host, days, now, last_day).items():
        daily[name] = daily[name] + points
    return {by: _table(by, {figure: daily[(by, figure)] for figure in RECORDS[by]}, daily[("", "energy")], per, price) for by in bys}


def _growth(counter: str, by: str, since: float, until: float) -> str:
    """The rise of ``counter`` from ``since`` to ``until`` (asked at ``until``), by host and ``by``: exact, a counter's
    difference, not increase()'s extrapolation; a series born since, or restarted (it fell), from 0."""
    grown = f"(({counter} - {counter} offset {round((until - since) * 1000)}ms) >= 0 or {counter})"
    return f'sum by (host{", " + by if by else ""}) (label_replace({grown}, "host", "$1", "instance", "(.*):[0-9]+"))'


def _last_recorded(prom: Prometheus, now: float, last_day: float | None, read_to: float) -> float | None:
    """The end of the last hour recording.yml's records hold among those the days read (written by ``read_to``): a
    record written within a clock hour holds the hour before it, so each hour is asked whether one was written in it
    (``RECORDED_BY`` after the hour it would hold). Looked for in the last three hours (the rules running), else in the
    last day the records have (``last_day``, its end); None where they have none."""
    at = max(now, read_to)
    for since, until in ((now - 3 * HOUR_S, at), *(((last_day - DAY_S, min(at, last_day + RECORDED_BY)),) if last_day else ())):
        start = since - since % HOUR_S
        written = prom.range(f"count(last_over_time({RECORDS['model']['requests']}[1h]))", start + RECORDED_BY, until, HOUR_S)
        ends = [t - RECORDED_BY for series in written for t, value in series.points if value]
        if ends:
            return round(max(ends))
    return None


def _unrecorded(prom: Prometheus, bys: Sequence[str], host: str, days: int, now: float,
                last_day: float | None) -> dict[tuple[str, str], list[tuple[dict[str, str], float, float]]]:
    """What no record holds yet, from the raw counters: the hour or two since the last one recorded (the whole range
    where none is), cut at midnight, as (labels, day end, value) like the records' days."""
    ends = day_ends(days, now)
    first = ends[0] - DAY_S
    since = max(_last_recorded(prom, now, last_day, ends[-1] + RECORDED_BY) or first, first)
    today = now - now % DAY_S
    segments = [(start, end) for start, end in ((since, min(today, now)), (max(since, today), now)) if end - start >= 1.0]
    asked: dict[tuple[tuple[str, str], float], str] = {}
    for start, end in segments:
        for by in bys:
            asked |= {((by, figure), end): _growth(counter, LABEL[by], start, end) for figure, counter in RAW[by].items()}
        system, parts = (_growth(counter, "", start, end) for counter in RAW_ENERGY)
        asked[(("", "energy"), end)] = f"{system} or {parts}"
    answers = prom.side_by_side({key: (lambda q=q, at=key[1]: prom.vector(q, at)) for key, q in asked.items()})
    found: dict[tuple[str, str], list[tuple[dict[str, str], float, float]]] = defaultdict(list)
    for (name, end), answer in answers.items():
        day_end = end - end % DAY_S + (DAY_S if end % DAY_S else 0)  # the midnight that ends the segment's day
        found[name] += [(labels, day_end, value) for labels, value in answer if value and (not host or labels.get("host") == host)]
    return found


def _table(by: str, daily: dict[str, list[tuple[dict[str, str], float, float]]], energy_daily: list[tuple[dict[str, str], float, float]],
           per: str, price: Price | None) -> list[dict]:
    label = LABEL[by]
    figures: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    spent_by: dict[tuple[float, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))  # (day, host) -> key -> generation seconds
    for figure, points in daily.items():
        for labels, day, value in points:
            key = labels.get(label, "")
            figures[(_period(day, per), key)][figure] += value
            figures[(_period(day, per), ALL)][figure] += value
            if figure == "generation_s":
                spent_by[(day, labels.get("host", ""))][key] += value  # the records' and the unrecorded hours' of a day add up
    energy: dict[tuple[float, str], float] = defaultdict(float)
    for labels, day, joules in energy_daily:
        energy[(day, labels.get("host", ""))] += joules
    measured: dict[tuple[str, str], float] = defaultdict(float)  # (period, key) -> joules
    for (day, where), joules in energy.items():
        period = _period(day, per)
        measured[(period, ALL)] += joules
        spent = spent_by.get((day, where), {})
        busy = sum(spent.values())
        for key, share in spent.items() if busy > 0 else ():
            measured[(period, key)] += joules * share / busy
    rows = []
    for period, key in sorted(figures, key=lambda pk: (pk[0], pk[1] == ALL, pk[1])):
        values = figures[(period, key)]
        row: dict = {"period": period, by: key, **{name: round(values.get(name, 0.0)) for name in COUNTS},
                     "generation_s": round(values.get("generation_s", 0.0), 1)}
        if energy:
            joules = measured.get((period, key))
            kwh = None if joules is None else joules / 3.6e6
            row["energy_kwh"] = None if kwh is None else round(kwh, 6)
            row["output_tokens_per_kwh"] = None if not kwh else round(row["output_tokens"] / kwh)
            if price is not None:
                row[f"cost_{price.currency}"] = None if kwh is None else round(kwh * price.per_kwh, 4)
        rows.append(row)
    return rows


def price_of(per_kwh: str, currency: str) -> Price | None:
    """A price per kWh (USAGE_PRICE_PER_KWH) with its currency (USAGE_CURRENCY); none without a price. A price
    without its currency, or that is no number, is refused, not guessed."""
    if not per_kwh:
        return None
    if not currency:
        raise ValueError("a price per kWh needs its currency (USAGE_CURRENCY, or --currency: EUR, USD...)")
    try:
        return Price(float(per_kwh), currency)
    except ValueError:
        raise ValueError(f"USAGE_PRICE_PER_KWH={per_kwh!r} is not a number") from None


def to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({name: "" if value is None else value for name, value in row.items()} for row in rows)
    return out.getvalue()


def _days(text: str) -> int:
    found = re.fullmatch(r"(\d+)([dw])", text)
    if not found or int(found.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of days or weeks, like 30d or 12w")
    return int(found.group(1)) * (7 if found.group(2) == "w" else 1)


def main(argv: list[str] | None = None) -> int:
    configured = settings.read()
    parser = argparse.ArgumentParser(prog="python -m ui.usage", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since", type=_days, default=30, help="how far back: 30d, 90d, 12w (default 30d)")
    parser.add_argument("--by", choices=sorted(RECORDS), default="model")
    parser.add_argument("--per", choices=PERIODS, default="day")
    parser.add_argument("--host", default="", help="one host (the instance without its port); default every host")
    parser.add_argument("--prometheus", default=configured.prometheus_url, help="($PROMETHEUS_URL, default %(default)s)")
    parser.add_argument("--price-per-kwh", type=float, help="the price of a kWh, for a cost column ($USAGE_PRICE_PER_KWH); none: no cost column")
    parser.add_argument("--currency", help="the price's currency, e.g. EUR ($USAGE_CURRENCY)")
    parser.add_argument("--csv", action="store_true", help="CSV on stdout (default: an aligned table)")
    args = parser.parse_args(argv)
    try:
        price = price_of(str(args.price_per_kwh) if args.price_per_kwh is not None else configured.price_per_kwh, args.currency or configured.currency)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        rows = usage(Prometheus(args.prometheus), args.by, args.since, args.per, args.host, price)
    except PrometheusError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.csv:
        sys.stdout.write(to_csv(rows))
    elif not rows:
        print(f"no usage recorded in the last {args.since} days (recording.yml's hourly records: is Prometheus loading it?)")
    else:
        widths = {name: max(len(name), *(len("" if row[name] is None else str(row[name])) for row in rows)) for name in rows[0]}
        print("  ".join(name.ljust(width) for name, width in widths.items()))
        for row in rows:
            print("  ".join(("" if row[name] is None else str(row[name])).ljust(width) for name, width in widths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
