"""The dashboard's Usage view: ui/usage.py's tables by model and by client, per day, week or month, with their
CSV downloads (the same rows as ``python -m ui.usage --csv``) and the output tokens per period at a glance."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from ui.queries import Prometheus, PrometheusError
from ui.settings import Settings
from ui.usage import ALL, PERIODS, price_of, tables, to_csv

RANGES = (30, 90)


def show(prom: Prometheus, host: str, configured: Settings) -> None:
    st.header("Usage")
    left, right = st.columns(2)
    days = left.radio("Range", RANGES, format_func=lambda d: f"last {d} days", horizontal=True)
    per = right.radio("Per", PERIODS, horizontal=True)
    try:
        price = price_of(configured.price_per_kwh, configured.currency)
    except ValueError as exc:
        st.warning(str(exc))
        price = None
    try:
        found = tables(prom, ("model", "client"), days, per, host, price)  # their queries side by side
    except PrometheusError as exc:
        st.error(str(exc))
        return
    if not found["model"] and not found["client"]:
        st.caption("No usage recorded in this range. The figures come from recording.yml's hourly records: Prometheus must load it "
                   "(make up and compose do), and the first record comes an hour after the first request.")
        return
    by_model = pd.DataFrame([row for row in found["model"] if row["model"] != ALL])
    if not by_model.empty:
        chart = alt.Chart(by_model).mark_bar().encode(
            x=alt.X("period:N", title=None), y=alt.Y("output_tokens:Q", title="output tokens"), color=alt.Color("model:N"),
            tooltip=["period", "model", "requests", "output_tokens"])
        st.altair_chart(chart.properties(height=220), width="stretch")
    for by, rows in found.items():
        st.subheader(f"By {by}")
        if not rows:
            st.caption(f"No {by} used in this range.")
            continue
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        st.download_button("Download CSV", to_csv(rows), file_name=f"ollama-usage-by-{by}-per-{per}-{days}d.csv", mime="text/csv", key=f"csv-{by}")
    columns = set(found["model"][0]) if found["model"] else set()
    notes = ["Each period's `all` row sums its rows; its energy is every joule measured, idle time included, and a row's energy is "
             "its share of its host's generation time that day."]
    if "energy_kwh" not in columns:
        notes.append("No power source measured energy in this range, so there are no energy or cost columns.")
    elif price is None:
        notes.append("Set USAGE_PRICE_PER_KWH and USAGE_CURRENCY for a cost column.")
    notes.append("Days are UTC; today counts up to the last hourly record.")
    st.caption(" ".join(notes))
