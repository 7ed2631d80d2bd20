"""The dashboard: how the LLM server is doing, at a glance. Reads top to bottom as the page does.

Configuration: ui/settings.py, read from the environment at the top of each run.
"""

from __future__ import annotations

import time
from functools import partial

import altair as alt
import httpx
import pandas as pd
import streamlit as st

from ui import alerts, format as fmt
from ui import now as in_flight
from ui import queries, recent, residency_view, sessions_view, settings, usage_view
from ui.cards import CARDS
from ui.queries import Filters, Prometheus, PrometheusError
from ui.status import STATUS, Snapshot, advise, read_snapshot

SETTINGS = settings.read()
WINDOWS = {"15 min": ("15m", 900), "1 h": ("1h", 3600), "6 h": ("6h", 21600), "24 h": ("24h", 86400)}
# Points a chart draws: 30 s apart over an hour. Each is an evaluation over every series the
# query selects, which a fleet of 10 hosts x 100 models makes costly (docs/benchmarks.md).
CHART_POINTS = 120


def filters(host: str = "", model: str = "", client: str = "") -> Filters:
    """What the pickers select, on the Prometheus jobs the settings name."""
    return Filters(host, model, client, proxy_job=SETTINGS.proxy_job, collector_job=SETTINGS.collector_job)


# Queries: cached for every tab of this server, so open tabs do not multiply Prometheus' load ------


@st.cache_resource
def prometheus(url: str) -> Prometheus:
    return Prometheus(url)


@st.cache_data(ttl=4, show_spinner=False)
def card_values(url: str, host: str, model: str) -> dict[str, tuple[float | None, float | None]]:
    """Each card's value now and a minute ago (for the change shown under it)."""
    prom, f, now = prometheus(url), filters(host, model), time.time()
    before = now - pd.Timedelta(SETTINGS.card_window).total_seconds()  # the cards' rates over that window, against the window before
    values = prom.side_by_side({(card.label, at): partial(prom.scalar, card.query(f, SETTINGS.card_window), at) for card in CARDS for at in (now, before)})
    return {card.label: (values[(card.label, now)], values[(card.label, before)]) for card in CARDS}


@st.cache_data(ttl=4, show_spinner=False)
def status_snapshot(url: str, host: str, model: str) -> Snapshot:
    return read_snapshot(prometheus(url), filters(host, model), recent=recent_requests(url, host)[0])


@st.cache_data(ttl=4, show_spinner=False)
def sources_up(url: str, host: str) -> dict[str, float]:
    return {labels.get("source", ""): value or 0.0 for labels, value in prometheus(url).vector(f"max by (source) (hw_collector_source_up{filters(host).host_only()})")}


@st.cache_data(ttl=4, show_spinner=False)
def chart_frames(url: str, host: str, model: str, window: str, seconds: int) -> dict[str, pd.DataFrame]:
    prom, f, now = prometheus(url), filters(host, model), time.time()
    step = max(5, seconds // CHART_POINTS)
    rate_window = "1m" if seconds <= 3600 else "5m"
    asked = {title: (promql, "") for title, (promql, _) in queries.charts(f, rate_window).items()}
    asked |= {f"p{int(q * 100)}": (queries.latency_by_endpoint(q, f, rate_window), "http_route") for q in queries.LATENCY_QUANTILES}
    return prom.side_by_side({title: partial(lambda promql, label: _frame(prom.range(promql, now - seconds, now, step), label), *query)
                              for title, query in asked.items()})


# How each unit is drawn: a scale and the axis title a person reads.
CHART_UNITS = {"tokens/s": (1, "tokens/s"), "bytes": (1 / 2**30, "GiB"), "ratio": (100, "%"), "W": (1, "W"), "Cel": (1, "°C"), "s": (1, "seconds")}


def line_chart(frame: pd.DataFrame, unit: str, height: int = 200) -> alt.Chart:
    scale, title = CHART_UNITS[unit]
    frame = frame.assign(value=frame["value"] * scale)
    several = frame["series"].nunique() > 1
    color = alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")) if several else alt.value("#1f77b4")
    return (
        alt.Chart(frame)
        .mark_line()
        .encode(x=alt.X("time:T", title=None, axis=alt.Axis(format="%H:%M")), y=alt.Y("value:Q", title=title), color=color, tooltip=["time:T", "series:N", alt.Tooltip("value:Q", format=".3~f")])
        .properties(height=height)
    )


def _frame(series: list[queries.Series], label: str = "") -> pd.DataFrame:
    rows = [
        {"time": pd.Timestamp(t, unit="s", tz="UTC"), "series": s.labels.get(label, "value") if label else "value", "value": v}
        for s in series
        for t, v in s.points
        if v is not None
    ]
    return pd.DataFrame(rows, columns=["time", "series", "value"])


@st.cache_data(ttl=4, show_spinner=False)
def latency_table(url: str, host: str, model: str, window: str) -> pd.DataFrame:
    prom, f = prometheus(url), filters(host, model)
    table: dict[str, dict[str, str]] = {}
    answers = prom.side_by_side({q: partial(prom.vector, queries.latency_by_endpoint(q, f, window)) for q in queries.LATENCY_QUANTILES})
    for q, answer in answers.items():
        for labels, value in answer:
            table.setdefault(labels.get("http_route", "?"), {})[f"P{int(q * 100)}"] = fmt.seconds(value)
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("endpoint")


@st.cache_data(ttl=4, show_spinner=False)
def time_shares(url: str, host: str, model: str, window: str) -> dict[str, float | None]:
    """What share of all generation time went to queueing, loading, the prompt and generating; {} without traffic."""
    prom = prometheus(url)
    spent = prom.side_by_side({name: partial(prom.scalar, promql) for name, promql in queries.time_shares(filters(host, model), window).items()})
    return fmt.shares(spent)


@st.cache_data(ttl=4, show_spinner=False)
def prompt_cache_line(url: str, host: str, model: str, window: str) -> str:
    prom, f = prometheus(url), filters(host, model)
    tokens = prom.side_by_side({name: partial(prom.scalar, promql) for name, promql in queries.prompt_tokens(f, window).items()})
    versions = [labels.get("ollama_version", "") for labels, _ in prom.vector(queries.ollama_versions(f))]
    return fmt.prompt_cache(tokens, versions)


@st.cache_data(ttl=4, show_spinner=False)
def client_table(url: str, host: str, client: str, window: str) -> pd.DataFrame:
    prom = prometheus(url)
    asked = queries.per_client(filters(host, client=client), window)
    rows: dict[str, dict[str, float | None]] = {}
    for column, answer in prom.side_by_side({column: partial(prom.vector, promql) for column, promql in asked.items()}).items():
        for labels, value in answer:
            rows.setdefault(labels.get("ollama_client", "?"), {})[column] = value
    total = sum(row.get("seconds") or 0.0 for row in rows.values())
    return pd.DataFrame([
        {
            "client": name,
            "requests": fmt.count(row.get("requests")),
            "tokens in / out": f"{fmt.count(row.get('tokens_in'))} / {fmt.count(row.get('tokens_out'))}",
            "cache hits": fmt.percent(row["tokens_cached"] / row["tokens_in"] if row.get("tokens_cached") is not None and row.get("tokens_in") else None),
            "share of generation time": fmt.percent((row.get("seconds") or 0.0) / total if total else None),
            "p95 latency": fmt.seconds(row.get("p95_latency_s")),
            "errors": fmt.count(row.get("errors") or 0.0 if row.get("requests") else None),
        }
        for name, row in sorted(rows.items(), key=lambda item: -(item[1].get("requests") or 0.0))
    ])


@st.cache_data(ttl=4, show_spinner=False)
def model_table(url: str, host: str, model: str, window: str) -> pd.DataFrame:
    prom, f = prometheus(url), filters(host, model)
    last_causes: dict[str, str] = {}
    for entry in recent_requests(url, host)[0]:  # newest first
        if entry.get("reload_cause") and entry.get("model"):
            last_causes.setdefault(entry["model"], entry["reload_cause"])
    rows: dict[str, dict[str, float | None]] = {}
    asked = {(column, "gen_ai_request_model"): promql for column, promql in queries.per_model(f, window).items()}
    asked |= {(column, "model"): promql for column, promql in queries.loaded_models(f).items()}
    asked[("runner", "model")] = queries.runners(f)["runners"]
    settings: dict[str, str] = {}  # the runner's, from Ollama's log (the collector's --ollama-log)
    for (column, label), answer in prom.side_by_side({key: partial(prom.vector, promql) for key, promql in asked.items()}).items():
        for labels, value in answer:
            rows.setdefault(labels.get(label, "?"), {})[column] = value
            if column == "runner":
                settings[labels.get(label, "?")] = fmt.runner(labels)
    out = []
    for name, row in sorted(rows.items()):
        size, vram = row.get("size_bytes"), row.get("vram_bytes")
        out.append({
            "model": name,
            "requests": fmt.count(row.get("requests")),
            "tokens/s (eval)": fmt.rate(row.get("tokens_per_second"), "tok/s"),
            "p95 latency": fmt.seconds(row.get("p95_latency_s")),
            "queue wait p95": fmt.seconds(row.get("queue_p95_s")),
            "cold loads": fmt.count(row.get("cold_loads")),
            "reloads": fmt.count(row.get("reloads")),
            "last reload cause": last_causes.get(name, ""),
            "context fill p95": fmt.percent(row.get("context_fill_p95")),
            "cache hits": fmt.percent(row.get("cache_hit_share")),
            "prompt tok/s (new)": fmt.rate(row.get("prompt_rate"), "tok/s"),
            "loaded now": "yes" if size is not None else "no",
            "VRAM": fmt.bytes_(vram),
            "in GPU": fmt.percent(vram / size if vram is not None and size else None),
            "runner (last started)": settings.get(name, fmt.NO_DATA),
        })
    return pd.DataFrame(out)


@st.cache_data(ttl=4, show_spinner=False)
def energy_per_token(url: str, host: str, model: str, window: str) -> float | None:
    return prometheus(url).scalar(queries.joules_per_token(filters(host, model), window))


@st.cache_data(ttl=4, show_spinner=False)
def firing_alerts(url: str, host: str) -> list[alerts.Firing]:
    return alerts.firing(prometheus(url).alert_rules(), host)


def connections(prometheus_url: str, proxy_url: str, ollama_url: str) -> dict[str, str | None]:
    """None when the service answers, else why not."""
    checks = {"Prometheus": prometheus_url + "/-/ready", "proxy": proxy_url + "/-/healthy", "Ollama": ollama_url + "/api/version"}
    found: dict[str, str | None] = {}
    for name, url in checks.items():
        try:
            answer = httpx.get(url, timeout=2, trust_env=False)
            found[name] = None if answer.status_code == 200 else f"answered {answer.status_code}"
        except httpx.HTTPError as exc:
            found[name] = f"unreachable at {url.rsplit('/', 2)[0]} ({type(exc).__name__})"
    return found


@st.cache_data(ttl=4, show_spinner=False)
def recent_requests(prometheus_url: str, host: str) -> tuple[list[dict], list[str]]:
    """The picked instance's requests (every proxy's for "all"), newest first, and the proxies that did not answer."""
    return recent.merged_requests(recent.proxy_urls(prometheus(prometheus_url), filters(host), SETTINGS.proxy_url))


@st.cache_data(ttl=15, show_spinner=False)
def filter_options(url: str) -> tuple[list[str], list[str], list[str]]:
    prom = prometheus(url)
    hosts = sorted({instance.rsplit(":", 1)[0] for instance in prom.label_values("instance", "up")})
    models = prom.label_values("gen_ai_request_model", "gen_ai_server_request_duration_seconds_count")
    clients = prom.label_values("ollama_client", "ollama_client_requests_total")
    return hosts, [m for m in models if m not in ("other", "unknown")], clients


# The page -------------------------------------------------------------------------------------

st.set_page_config(page_title="Ollama monitor", layout="wide")
st.title("Ollama monitor")

with st.sidebar:
    view = st.radio("View", ["Live", "Sessions", "Usage", "Residency"], horizontal=True,
                    help="Sessions: coding agents' sessions, turn by turn. Usage: requests, tokens, energy and cost per day, week or month. "
                         "Residency: which model was loaded when, and why it went")
    window_label = st.selectbox("Chart window", list(WINDOWS), index=1)
    try:
        host_options, model_options, client_options = filter_options(SETTINGS.prometheus_url)
    except PrometheusError:
        host_options, model_options, client_options = [], [], []
    host = st.selectbox("Instance", ["all", *host_options])
    model = st.selectbox("Model", ["all", *model_options])
    client = st.selectbox("Client", ["all", *client_options], help="filters the Clients table (the per-model figures are not split by client)")
    st.caption(f"Prometheus: {SETTINGS.prometheus_url}")
host = "" if host == "all" else host
model = "" if model == "all" else model
client = "" if client == "all" else client
window, window_seconds = WINDOWS[window_label]


def table_section(title: str, table: pd.DataFrame, when_empty: str) -> None:
    st.subheader(title)
    if table.empty:
        st.caption(when_empty)
    else:
        st.dataframe(table, hide_index=True, width="stretch")


@st.fragment(run_every=5)
def live() -> None:
    now = time.time()
    # What fires (alerts.yml, as Prometheus evaluates it), then the status line, then how the parts are connected.
    try:
        for alert in firing_alerts(SETTINGS.prometheus_url, host):
            (st.error if alert.severity == "critical" else st.warning)(fmt.plain(alert.line(now)), icon="🚨")
    except PrometheusError:
        pass  # said below, once
    try:
        snapshot = status_snapshot(SETTINGS.prometheus_url, host, model)
        line = STATUS.get(snapshot, SETTINGS)
        source = "rules" + (f" ({line.why_rules})" if line.why_rules else "") if line.source == "rules" else line.source
        hint = f" · {line.hint}" if line.hint else ""
        st.info(fmt.plain(line.text))
        # What to change, by the rules, whatever the status model wrote (docs/metrics.md, "Why was that request slow").
        for advice in advise(snapshot):
            st.warning(fmt.plain(advice))
        st.caption(f"status by {source}, {fmt.age(now - line.generated_at)}{hint}")
    except PrometheusError:
        st.info("Status unknown: Prometheus cannot be reached.")

    status = connections(SETTINGS.prometheus_url, SETTINGS.proxy_url, SETTINGS.ollama_url)
    columns = st.columns(len(status) + 1)
    for column, (name, problem) in zip(columns, status.items()):
        column.markdown(f"{':green[●]' if problem is None else ':red[●]'} **{name}**" + ("" if problem is None else f"  \n{problem}"))
    columns[-1].markdown(f"updated {time.strftime('%H:%M:%S')}")
    if status["Prometheus"] is not None:
        st.error(f"Prometheus at {SETTINGS.prometheus_url} is unreachable: no numbers to show. The page retries every 5 s.")
        return

    # The cards.
    try:
        values = card_values(SETTINGS.prometheus_url, host, model)
        up = sources_up(SETTINGS.prometheus_url, host)
    except PrometheusError as exc:
        st.error(str(exc))
        return
    grid = st.columns(5)
    for index, card in enumerate(CARDS):
        now_value, before = values[card.label]
        with grid[index % 5]:
            if now_value is None:
                reason = card.why_missing(up)
                st.metric(card.label, fmt.NO_DATA, help=reason)
                st.caption(reason)
            else:
                delta = None if before is None else card.change(now_value, before)
                st.metric(card.label, card.show(now_value), delta=delta, delta_color="normal" if card.higher_is_better else "inverse")

    joules = energy_per_token(SETTINGS.prometheus_url, host, model, "5m")
    st.markdown(f"**Energy per generated token:** {fmt.joules(joules)}" + ("" if joules is not None else " (needs a power source and generated tokens)"))

    # The charts over the chosen window.
    frames = chart_frames(SETTINGS.prometheus_url, host, model, window, window_seconds)
    chart_columns = st.columns(3)
    for index, (title, (_, unit)) in enumerate(queries.charts(filters(), "1m").items()):
        with chart_columns[index % 3]:
            st.markdown(f"**{title}**")
            frame = frames[title]
            if frame.empty:
                st.caption(f"{fmt.NO_DATA} no data in this window")
            else:
                st.altair_chart(line_chart(frame, unit), width="stretch")
    st.markdown("**Latency percentiles per endpoint**")
    for tab, q in zip(st.tabs([f"P{int(q * 100)}" for q in queries.LATENCY_QUANTILES]), queries.LATENCY_QUANTILES):
        frame = frames[f"p{int(q * 100)}"]
        with tab:
            if frame.empty:
                st.caption(f"{fmt.NO_DATA} no requests in this window")
            else:
                st.altair_chart(line_chart(frame, "s", height=220), width="stretch")
    table = latency_table(SETTINGS.prometheus_url, host, model, window)
    if not table.empty:
        st.dataframe(table, width="stretch")

    st.subheader("Where the time went")
    shares = time_shares(SETTINGS.prometheus_url, host, model, window)
    if not shares:
        st.caption(f"{fmt.NO_DATA} no generation in this window")
    else:
        st.caption("Share of all generation time in the window: " + ", ".join(f"{name} {fmt.percent(share)}" for name, share in shares.items()))
    st.caption(fmt.plain(prompt_cache_line(SETTINGS.prometheus_url, host, model, window)))

    table_section("Models", model_table(SETTINGS.prometheus_url, host, model, window), "No model has been used or loaded in this window.")
    table_section("Clients", client_table(SETTINGS.prometheus_url, host, client, window), "No client has sent a request in this window.")


@st.fragment(run_every=1)
def now_section() -> None:
    """What Ollama is working on now, each host's (ui/now.py): read every second, so a prompt's progress shows as it goes."""
    st.subheader("Now")
    found, notes = [], []
    for name, (collector_url, proxy_url) in in_flight.hosts(prometheus(SETTINGS.prometheus_url), filters(host), SETTINGS.collector_url, SETTINGS.proxy_url).items():
        live, requests = in_flight.read(collector_url, proxy_url)
        found += [(name, row) for row in in_flight.rows(live, requests)]
        if live is None:
            notes.append(f"{name or 'this host'}: Ollama's log is not read (the collector's --ollama-log), so no prompt's progress shows")
        if requests is None:
            notes.append(f"{name or 'this host'}: the proxy's /-/in-flight cannot be read, so clients are not named")
    now = time.time()
    if not found:
        st.caption("Nothing in flight.")
    for name, row in found:  # a row each, its progress as a bar (read as text by the page's readers)
        who, phase, progress, since = st.columns([3, 2, 5, 1])
        who.markdown(f"**{row.client or 'not through the proxy'}** · {row.model or 'model not known'}" + (f" · {name}" if name else ""))
        phase.markdown(row.phase)
        if row.progress is not None:
            left = f", {fmt.seconds(row.eta_s)} left" if row.eta_s is not None else ""
            rate = f" at {row.tokens_per_second:,.0f}/s" if row.tokens_per_second else ""
            cached = f" ({row.cached_tokens:,} from the cache)" if row.cached_tokens else ""
            progress.progress(row.progress, text=f"{row.read_tokens:,} of {row.prompt_tokens:,} prompt tokens{cached}{rate}{left}")
        since.markdown(fmt.seconds(now - row.since))
    for note in notes:
        st.caption(note)


if view == "Usage":
    usage_view.show(prometheus(SETTINGS.prometheus_url), host, SETTINGS)
    st.stop()
if view == "Sessions":
    sessions_view.show(*recent_requests(SETTINGS.prometheus_url, host))
    st.stop()
if view == "Residency":
    residency_view.show(prometheus(SETTINGS.prometheus_url), filters(host))
    st.stop()

now_section()
live()

st.subheader("Recent requests")
entries, unreachable = recent_requests(SETTINGS.prometheus_url, host)
for url in unreachable:
    st.warning(f"The proxy's request list at {url}/-/requests cannot be read.")
if not entries:
    st.caption("No finished requests yet.")
else:
    cuts = recent.log_cuts([collector for collector, _ in in_flight.hosts(prometheus(SETTINGS.prometheus_url), filters(host), SETTINGS.collector_url,
                                                                           SETTINGS.proxy_url).values() if collector])
    listing = pd.DataFrame([
        {
            "started": e["start_time"][11:19],
            "instance": e["instance"],
            "route": e["route"],
            "model": e["model"] or "",
            "status": e["status"],
            "duration": fmt.seconds(e["duration_s"]),
            "TTFT": fmt.seconds(e["time_to_first_token_s"]) + ("" if e.get("first_output") != "tool_call" else " (tool call)"),
            "tokens in/out": f"{fmt.count(e['input_tokens'])} / {fmt.count(e['output_tokens'])}",
            "tokens/s": fmt.rate(e["tokens_per_second"], ""),
            "cached": fmt.count(e.get("prompt_cached_tokens")),
            "cache lost": f"{e['cache_miss']} ({fmt.count(e.get('read_again_tokens'))} read again)" if e.get("cache_miss") else "",
            "prompt cut": recent.cut_of(e, cuts),
            "finish": e.get("finish_reason") or "",
            "answer": ", ".join(kind for kind, flag in (("reasoning", e.get("reasoning")), ("tool calls", e.get("tool_calls"))) if flag),
            "error": e["error_type"] or "",
        }
        for e in entries
    ])
    st.dataframe(listing, hide_index=True, width="stretch", height=260)
    labels = [f"{e['start_time'][11:19]} {e['route']} {e['model'] or ''} ({fmt.seconds(e['duration_s'])})" for e in entries]
    chosen = entries[st.selectbox("Request", range(len(entries)), format_func=lambda i: labels[i])]
    phases = pd.DataFrame(fmt.waterfall(chosen))
    chart = alt.Chart(phases).mark_bar().encode(
        x=alt.X("start:Q", title="seconds since the request arrived"),
        x2="end:Q",
        y=alt.Y("phase:N", sort=None, title=None),
        tooltip=["phase", "duration"],
    )
    st.altair_chart(chart.properties(height=160), width="stretch")
    if SETTINGS.jaeger_url and chosen.get("trace_sampled", True):
        st.markdown(f"[Open the trace in Jaeger]({SETTINGS.jaeger_url.rstrip('/')}/trace/{chosen['trace_id']})")
    elif SETTINGS.jaeger_url:
        st.caption(f"Trace {chosen['trace_id']} was not recorded: the proxy exports traces when OTEL_EXPORTER_OTLP_ENDPOINT is set.")
