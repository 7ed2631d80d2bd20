"""A month of the stack's counters written for promtool to backfill, and the truth they were made from.

The series are the ones the proxy and the collector export (names and labels as Prometheus scrapes them), sampled
every ``step_s`` from zero at ``start``. Within each hour a series grows by the same amount at every sample (the
amount drawn afresh each hour, some hours idle), so an hour's increase is exactly what was added in it, as Prometheus'
``increase`` reads it with or without extrapolation. Each request is counted once by model and once by client, as the
proxy counts it. Energy (hw_energy_joules_total) grows all the time, idle hours included: on a host with a power meter
as one hw_type="system" counter, on a host measured by parts as a CPU (RAPL) and a GPU (NVML) counter, the CPU's
starting again from zero halfway through the month (the collector restarted; NVML's counter runs on), and that
host's proxy counters all from zero five days later. So a rule that summed the parts before taking their increase would read the drop as a reset and count the
month twice, and one that took an hour's rise as its last value less its first would lose the hour of each restart.

Used by tests/e2e/ui/test_usage.py (3 hosts, 2 models, 2 clients) and bench/usage_scale.py (10 hosts, 100 models); the
residency history (``write_residency``: which model was resident when, and the loads counted) by
tests/e2e/ui/test_residency.py and the same benchmark.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import xxhash
import yaml

HOUR_S, DAY_S = 3600, 86400


@dataclass
class Truth:
    """What was added, per UTC day start (unix seconds): by model and by client, each figure; energy by host."""

    by_model: dict[tuple[int, str], dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    by_client: dict[tuple[int, str], dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    joules: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    seconds: dict[tuple[int, str, str], float] = field(default_factory=lambda: defaultdict(float))  # (day, host, model)
    client_seconds: dict[tuple[int, str, str], float] = field(default_factory=lambda: defaultdict(float))
    host_requests: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))


def write_history(path: Path, start: int, days: int, hosts: list[str], models: list[str], clients: list[str], step_s: int = 300,
                  seed: int = 7, idle_share: float = 0.3, metered: list[str] | None = None, by_parts: list[str] = ()) -> Truth:
    """OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``; returns what it adds up to.
    ``metered``: the hosts with a power meter (default all); ``by_parts``: hosts whose energy is their CPU's and GPU's."""
    metered = hosts if metered is None else metered
    assert start % DAY_S == 0 and HOUR_S % step_s == 0
    rng = random.Random(seed)
    steps_per_hour = HOUR_S // step_s
    hours = days * 24
    # per (host, model, client) and hour: what each sample adds (requests, input, output, seconds)
    plan: dict[tuple[str, str, str], list[tuple[int, int, int, float]]] = {}
    for host in hosts:
        for model in models:
            for client in clients:
                adds = []
                for _ in range(hours):
                    if rng.random() < idle_share:
                        adds.append((0, 0, 0, 0.0))
                    else:
                        requests = rng.randint(1, 4)
                        adds.append((requests, requests * rng.randint(5, 400), requests * rng.randint(1, 300), round(requests * rng.uniform(0.2, 9.0), 3)))
                plan[(host, model, client)] = adds
    watts = {host: [rng.uniform(20, 350) for _ in range(hours)] for host in hosts}
    gpu_share = {host: [rng.uniform(0.3, 0.9) for _ in range(hours)] for host in by_parts}
    restart = (hours // 2) * steps_per_hour + steps_per_hour // 3  # the step a part's counter starts again from zero
    truth = Truth()
    series: dict[str, list[float]] = {}  # sample line prefix -> values at each step (after step 0)

    def grow(name: str, per_hour: list[float], reset_at: int | None = None) -> None:
        """Each hour's amount added at every step; from zero again at step ``reset_at`` (what was added in that step)."""
        values, total = [0.0], 0.0
        for amount in per_hour:
            for _ in range(steps_per_hour):
                total = amount if len(values) == reset_at else total + amount
                values.append(total)
        series[name] = values

    for host in hosts:
        proxy, collector = f'instance="{host}:8001",job="otel-proxy"', f'instance="{host}:8002",job="hw-collector"'
        proxy_restart = restart + 5 * 24 * steps_per_hour + 1 if host in by_parts else None  # its proxy restarted too, days later
        for model in models:
            per = [[sum(plan[(host, model, c)][h][i] for c in clients) for h in range(hours)] for i in range(4)]
            labels = f'{{gen_ai_operation_name="chat",gen_ai_request_model="{model}",{proxy}}}'
            for index, family in enumerate(("gen_ai_server_request_duration_seconds_count", "ollama_prompt_tokens_total", "ollama_generated_tokens_total",
                                            "gen_ai_server_request_duration_seconds_sum")):
                grow(family + labels, per[index], reset_at=proxy_restart)
        for client in clients:
            per = [[sum(plan[(host, m, client)][h][i] for m in models) for h in range(hours)] for i in range(4)]
            grow(f'ollama_client_requests_total{{error_type="",ollama_client="{client}",{proxy}}}', per[0], proxy_restart)
            grow(f'ollama_client_tokens_total{{gen_ai_token_type="input",ollama_client="{client}",{proxy}}}', per[1], proxy_restart)
            grow(f'ollama_client_tokens_total{{gen_ai_token_type="output",ollama_client="{client}",{proxy}}}', per[2], proxy_restart)
            grow(f'ollama_client_request_duration_seconds_sum{{ollama_client="{client}",{proxy}}}', per[3], proxy_restart)
        if host in metered:
            grow(f'hw_energy_joules_total{{hw_type="system",{collector}}}', [w * step_s for w in watts[host]])
        if host in by_parts:
            gpu = [w * share * step_s for w, share in zip(watts[host], gpu_share[host])]
            grow(f'hw_energy_joules_total{{hw_id="intel-rapl:0",hw_name="package-0",hw_type="cpu",{collector}}}',
                 [w * step_s - part for w, part in zip(watts[host], gpu)], reset_at=restart)
            grow(f'hw_energy_joules_total{{hw_id="GPU-0",hw_name="NVIDIA L4",hw_type="gpu",hw_vendor="NVIDIA",{collector}}}', gpu)
        for hour in range(hours):
            day = start + (hour // 24) * DAY_S
            if host in metered or host in by_parts:
                truth.joules[(day, host)] += watts[host][hour] * step_s * steps_per_hour
            for (where, model, client), adds in plan.items():
                if where != host:
                    continue
                requests, inputs, outputs, seconds = (amount * steps_per_hour for amount in adds[hour])
                for table, key in ((truth.by_model, model), (truth.by_client, client)):
                    figures = table[(day, key)]
                    figures["requests"] += requests
                    figures["input_tokens"] += inputs
                    figures["output_tokens"] += outputs
                    figures["generation_s"] += seconds
                truth.seconds[(day, host, model)] += seconds
                truth.host_requests[(day, host)] += requests
                truth.client_seconds[(day, host, client)] += seconds
    with path.open("w") as out:
        for name, values in sorted(series.items()):  # a family's series together, each in time order
            for index, value in enumerate(values):
                out.write(f"{name} {value!r} {start + index * step_s}\n")
        out.write("# EOF\n")
    return truth


@dataclass(frozen=True)
class Stay:
    """One model resident on one host from ``since`` to ``until`` (unix seconds), as the history writes it."""

    host: str
    model: str
    since: int
    until: int
    loaded: str = "cold"  # how the proxy counted its load: cold or reload
    cause: str | None = None  # a reload's changed options
    expires: int | None = None  # the expiry /api/ps gives it; None: five minutes ahead at every sample (in use)


def write_residency(path: Path, stays: list[Stay], end: int, step_s: int = 60, loads_step_s: int = 240,
                    restarts: dict[str, list[int]] | None = None) -> None:
    """The collector's /api/ps gauges (``ollama_loaded_model_size_bytes`` and ``..._expiry_seconds``) every ``step_s``
    while each stay lasts, and the proxy's ``ollama_model_loads_total`` from each series' first load to ``end``: every
    ``loads_step_s`` (the counter is scraped every few seconds; this is within Prometheus' 5-minute lookback) and at
    each load. ``restarts``: when each host's proxy started again, its counters from zero (the loads after it)."""
    ordered = sorted(stays, key=lambda stay: (stay.host, stay.model, stay.since))  # a series' samples together, in time order
    with path.open("w") as out:
        for family in ("ollama_loaded_model_size_bytes", "ollama_loaded_model_expiry_seconds"):
            for stay in ordered:
                head = f'{family}{{instance="{stay.host}:8002",job="hw-collector",model="{stay.model}"}}'
                for at in range(stay.since, stay.until, step_s):
                    value = 2e9 if family.endswith("bytes") else stay.expires or at + 300
                    out.write(f"{head} {value} {at}\n")
        loads: dict[tuple[str, str, str, str | None], list[int]] = defaultdict(list)
        for stay in ordered:
            loads[(stay.host, stay.model, stay.loaded, stay.cause)].append(stay.since)
        for (host, model, reason, cause), times in sorted(loads.items(), key=lambda item: (item[0][:3], item[0][3] or "")):
            labels = f'gen_ai_request_model="{model}",instance="{host}:8001",job="otel-proxy",ollama_load_reason="{reason}"'
            head = "ollama_model_loads_total{" + labels + (f',ollama_load_cause="{cause}"' if cause else "") + "}"
            started = sorted((restarts or {}).get(host, []))
            at_times = sorted(set(range((times[0] // loads_step_s + 1) * loads_step_s, end, loads_step_s)) | set(times)
                              | {r for r in started if r > times[0]})

            def count(at: int) -> int:
                since = max((r for r in started if r <= at), default=-1)
                return sum(1 for t in times if since < t <= at)

            out.writelines(f"{head} {count(at)} {at}\n" for at in at_times)
        out.write("# EOF\n")


def backfill(promtool: str, openmetrics: Path, data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    # one block a month at most: the 2 h default makes hundreds, a minute and more to write
    done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=744h", str(openmetrics), str(data)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


# A live Prometheus evaluates a rule group at an offset of its own within each interval, never on the hour by design:
# the xxHash64 of the group's labels (name, and the file as named to it) modulo the interval (rules/group.go
# ``Group.hash``, ``EvalTimestamp``), and promtool's backfill aligns its evaluations the same way (cmd/promtool/rules.go
# ``importRule``). So the file each group is written to is named here so that the group is evaluated at 47 min 13 s
# (to the minute after) past each hour, wherever the checkout lies: a rule that took the last 60 minutes for the clock
# hour (a plain increase(x[1h])) shifts every day's figures, and a test says so.
EVALUATION_OFFSET_S = 47 * 60 + 13
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def evaluation_offset_s(file: str, group: str, interval_s: int) -> float:
    """Where within each interval Prometheus evaluates the group ``group`` of the rules file named ``file``."""
    labels = b"".join(name + b"\xff" + value.encode() + b"\xff" for name, value in ((b"file", file), (b"name", group)))  # sorted by name
    return xxhash.xxh64_intdigest(labels) % (interval_s * 10**9) / 1e9


def backfill_rules(promtool: str, url: str, rules: Path, start: int, end: int, out: Path, offset_s: int = EVALUATION_OFFSET_S) -> dict[str, float]:
    """recording.yml evaluated over the history into blocks of their own: each group at ``offset_s`` (to the minute
    after) past every whole hour from ``start`` to the one before ``end``. Returns where in the hour each group was."""
    groups = yaml.safe_load(rules.read_text())["groups"]
    at: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        files = []
        for group in groups:
            interval = group.get("interval", "1h")
            assert interval == "1h", f"{group['name']}: evaluated every {interval}, the backfill places hourly groups"
            for n in itertools.count():
                file = f"{directory}/{group['name']}-{n}.yml"
                if offset_s <= (found := evaluation_offset_s(file, group["name"], HOUR_S)) < offset_s + 60:
                    break
            Path(file).write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
            files.append(file)
            at[group["name"]] = found
        # promtool evaluates at the group's offset past each hour from --start to --end, both included
        done = subprocess.run([promtool, "tsdb", "create-blocks-from", "rules", f"--start={start}", f"--end={end - 1}", f"--url={url}",
                               f"--output-dir={out}", "--eval-interval=1h", *files], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return at
