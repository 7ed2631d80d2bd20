"""Numbers as a person reads them. Pure functions: None, NaN and Inf are "—", never 0."""

from __future__ import annotations

import math

NO_DATA = "—"


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value) or math.isinf(value)


def seconds(value: float | None) -> str:
    if _missing(value):
        return NO_DATA
    assert value is not None
    if abs(value) < 1:
        return f"{value * 1000:.0f} ms" if abs(value) >= 0.01 else f"{value * 1000:.1f} ms"
    if abs(value) < 60:
        return f"{value:.1f} s" if abs(value) < 10 else f"{value:.0f} s"
    return f"{value / 60:.1f} min"


def bytes_(value: float | None) -> str:
    if _missing(value):
        return NO_DATA
    assert value is not None
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def percent(ratio: float | None) -> str:
    if _missing(ratio):
        return NO_DATA
    assert ratio is not None
    return f"{ratio * 100:.1f} %" if ratio < 0.1 else f"{ratio * 100:.0f} %"


def rate(value: float | None, unit: str = "/s") -> str:
    if _missing(value):
        return NO_DATA
    assert value is not None
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.1f} {unit}" if abs(value) >= 1 else f"{value:.2f} {unit}"


def watts(value: float | None) -> str:
    return NO_DATA if _missing(value) else f"{value:.1f} W" if value < 100 else f"{value:.0f} W"  # type: ignore[operator]


def celsius(value: float | None) -> str:
    return NO_DATA if _missing(value) else f"{value:.0f} °C"


def joules(value: float | None) -> str:
    if _missing(value):
        return NO_DATA
    assert value is not None
    return f"{value:.2f} J" if value >= 0.1 else f"{value * 1000:.1f} mJ"


def count(value: float | None) -> str:
    return NO_DATA if _missing(value) else f"{value:.0f}"


def age(seconds_ago: float) -> str:
    if seconds_ago < 1:
        return "just now"
    if seconds_ago < 90:
        return f"{seconds_ago:.0f} s ago"
    return f"{seconds_ago / 60:.0f} min ago"


_MARKDOWN_SPECIALS = set("\\`*_{}[]()<>#+-.!|$:~=")


def plain(text: str) -> str:
    """Text shown through Streamlit's markdown exactly as written: every markdown, LaTeX ($),
    colour (:red[...]) and emoji (:smile:) trigger escaped."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in text)


def waterfall(request: dict) -> list[dict]:
    """A /-/requests entry's phases back to back, as rows of phase, start, end (seconds) and duration (text).

    With Ollama's own phases (model load, prompt evaluation, generation) the rest of the
    request is "queue and overhead". An answer that reports none (the Responses and
    Anthropic APIs, cloud models) is shown as the proxy saw it: until the first token, then
    streaming; one bar when even the first token's time is unknown.
    """
    duration = request.get("duration_s") or 0.0
    phases: list[tuple[str, float | None]] = [("model load", request.get("load_s")), ("prompt evaluation", request.get("prompt_eval_s")), ("generation", request.get("eval_s"))]
    if all(length is None for _, length in phases):
        first = request.get("time_to_first_token_s")
        if first is None:
            phases = [("whole request (no phases reported)", duration)]
        else:
            phases = [("until the first token", first), ("streaming the answer", max(0.0, duration - first))]
    else:
        known = sum(length or 0.0 for _, length in phases)
        phases = [("queue and overhead", max(0.0, duration - known)), *phases]
    rows, cursor = [], 0.0
    for name, length in phases:
        if length is None:
            continue
        rows.append({"phase": name, "start": cursor, "end": cursor + length, "duration": seconds(length)})
        cursor += length
    return rows
