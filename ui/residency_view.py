"""The dashboard's Residency view: which model was resident when (ui/residency.py), as one bar per stay coloured by how
it ended, and below it each load and departure as a line a person reads."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import altair as alt
import pandas as pd
import streamlit as st

from ui import residency
from ui.queries import Filters, Prometheus, PrometheusError

RANGES = {"last hour": 3600, "last 24 hours": 86_400, "last 7 days": 7 * 86_400, "last 30 days": 30 * 86_400, "last 90 days": 90 * 86_400}
ENDING_COLOURS = {  # how a stay ended: the legend reads as the scheduler's story
    residency.RESIDENT: "#4c78a8",
    residency.RELOADED: "#72b7b2",
    residency.EXPIRED: "#54a24b",
    residency.EVICTED: "#e45756",
    residency.UNLOADED: "#9d755d",
}


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=timezone.utc)


def stay_rows(stays: list[residency.Stay], step: float, end: float) -> pd.DataFrame:
    """One row a stay; a bar runs to a step past its last sample, where it was last known to be resident, and no
    further than ``end`` (now: steps of an hour or more end at the next whole one)."""
    several_hosts = len({stay.host for stay in stays}) > 1
    return pd.DataFrame([
        {
            "model": f"{stay.host} · {stay.model}" if several_hosts else stay.model,
            "from": _utc(stay.start),
            "to": _utc(min(stay.end + step, end)),
            "ended": stay.ended,
            "how it began": residency.describe_start(stay),
            "how it ended": residency.describe_end(stay),
        }
        for stay in stays
    ])


def show(prom: Prometheus, f: Filters) -> None:
    st.header("Model residency")
    label = st.radio("Range", list(RANGES), index=1, horizontal=True)
    end = time.time()
    start = end - RANGES[label]
    step = residency.step_for(end - start)
    try:
        stays, _ = residency.timeline(prom, f, start, end, step)
    except PrometheusError as exc:
        st.error(str(exc))
        return
    if not stays:
        st.caption("No model was resident in this range, or the collector's /api/ps samples (ollama_loaded_model_size_bytes) "
                   "are not in Prometheus.")
        return
    rows = stay_rows(stays, step, end)
    chart = alt.Chart(rows).mark_bar(height={"band": 0.7}).encode(
        x=alt.X("from:T", title=None, scale=alt.Scale(domain=[_utc(start).isoformat(), _utc(end).isoformat()])),
        x2="to:T",
        y=alt.Y("model:N", title=None, sort="ascending", axis=alt.Axis(labelLimit=320)),  # by host, then model
        color=alt.Color("ended:N", title="how it ended", scale=alt.Scale(domain=list(ENDING_COLOURS), range=list(ENDING_COLOURS.values()))),
        tooltip=["model", alt.Tooltip("from:T", format="%Y-%m-%d %H:%M:%S"), alt.Tooltip("to:T", format="%Y-%m-%d %H:%M:%S"), "how it began", "how it ended"],
    )
    st.altair_chart(chart.properties(height=max(120, 36 * rows["model"].nunique())), width="stretch")
    lines = residency.events(stays)
    if lines:
        st.dataframe(pd.DataFrame([{**line, "at": _utc(float(line["at"])).strftime("%Y-%m-%d %H:%M:%S UTC")} for line in reversed(lines)]),
                     hide_index=True, width="stretch", height=min(400, 38 + 35 * len(lines)))
    read = (f"read in steps of {step / 3600:g} h (recording.yml's hourly records, the samples for the hours not recorded yet)"
            if step >= residency.HOUR_S else f"read every {step:g} s here")
    st.caption(f"A bar runs from the first to the last /api/ps sample that listed the model, {read}. "
               "Evicted: it went before its keep_alive ran out while another model was loaded (OLLAMA_MAX_LOADED_MODELS, or VRAM). "
               "Expired: its keep_alive ran out. Reloaded: its runner options changed (the cause names them; the values are in "
               "the request's trace). Unloaded: it went with no other load beside it (ollama stop, a restart, a failed runner).")
