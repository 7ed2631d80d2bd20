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


REST = "other (Ollama's overhead, the network, answers Ollama did not time)"


def shares(spent: dict[str, float | None]) -> dict[str, float | None]:
    """Each part's share of ``spent["all"]`` (seconds per second of each), and the rest under REST, so that the
    shares add up to 1; {} when nothing was spent, None for a part with no data."""
    whole = spent.get("all")
    if _missing(whole) or not whole:
        return {}
    parts = {name: (None if _missing(value) else max(0.0, value) / whole) for name, value in spent.items() if name != "all"}  # type: ignore[operator]
    known = sum(share for share in parts.values() if share is not None)
    parts[REST] = max(0.0, 1.0 - known)
    return parts


def waterfall(request: dict) -> list[dict]:
    """A /-/requests entry's segments back to back, as rows of phase, start, end (seconds) and duration (text).

    Ollama's load_duration in its parts (waiting behind loads, draining, loading or reloading,
    or "not told apart" where the proxy cannot say), the wait for a slot, then prompt
    evaluation, generation, the rest of
    Ollama's time and the proxy's with the network: together the request's duration. An
    answer that reports no phases (the Responses and Anthropic APIs, cloud models) is shown
    as the proxy saw it: until the first token, then streaming; one bar when even the first
    token's time is unknown.
    """
    duration = request.get("duration_s") or 0.0
    reason = request.get("load_reason")
    behind = ", ".join(request.get("waited_behind") or [])
    if reason == "unknown":
        waiting: list[tuple[str, float | None]] = [("queue or load (not told apart)", request.get("unknown_s", request.get("load_duration_s")))]
    else:
        load_name = "model reload" + (f" ({request['reload_cause']})" if request.get("reload_cause") else "") if reason == "reload" else "model load"
        waiting = [
            ("waiting behind loads" + (f" ({behind})" if behind else ""), request.get("pending_wait_s")),
            ("draining the old runner", request.get("drain_s")),
            (load_name, request.get("load_s")),
        ]
        if "pending_wait_s" not in request:  # an entry from a proxy before the slot wait was told apart
            waiting = [("waiting for a slot", request.get("queue_wait_s")), (load_name, request.get("load_s"))]
    waiting.append(("waiting for a slot", request.get("slot_wait_s")))
    ollama = [(prompt_phase(request), request.get("prompt_eval_s")), ("generation", request.get("eval_s"))]
    phases: list[tuple[str, float | None]]
    first = request.get("time_to_first_token_s")
    # An answer that opens with a tool call was generated whole before it (Ollama sends a call once it is complete).
    to_first, after_first = (("prompt and the whole tool call (sent once complete)", "closing the answer") if request.get("first_output") == "tool_call"
                             else ("until the first token", "streaming the answer"))
    if request.get("cloud"):  # ollama.com's time: Ollama's scheduler never saw it
        phases = [("cloud (ollama.com), whole request", duration)] if first is None else \
            [(f"cloud (ollama.com): {to_first}", first), (f"cloud: {after_first}", max(0.0, duration - first))]
    elif all(length is None for _, length in [*waiting, *ollama]):
        if first is None:
            phases = [("whole request (no phases reported)", duration)]
        else:
            phases = [(to_first, first), (after_first, max(0.0, duration - first))]
    elif "proxy_s" in request and request.get("ollama_total_s") is None:
        # Ollama timed nothing (the OpenAI and Anthropic APIs): the waits the proxy could tell, then what it saw.
        known = [(name, length) for name, length in waiting if length is not None]
        waited = sum(length for _, length in known)
        rest = to_first.replace("until the first token", "prompt and first token")
        rest = rest if request.get("load_s") == 0.0 else f"load, {rest} (not told apart)"
        if first is None:
            phases = [*known, ("the rest (not told apart)", max(0.0, duration - waited))]
        else:
            phases = [*known, (rest, max(0.0, first - waited)), (after_first, max(0.0, duration - max(first, waited)))]
    elif "proxy_s" in request:
        phases = [*waiting, *ollama, ("Ollama, other (templating, tokenizing)", request.get("ollama_other_s")), ("proxy and network", request.get("proxy_s"))]
    else:  # an entry from a proxy before the parts were told apart
        known = sum(length or 0.0 for _, length in [*waiting, *ollama])
        phases = [("queue and overhead", max(0.0, duration - known)), *waiting, *ollama]
    rows, cursor = [], 0.0
    for name, length in phases:
        if not length:
            continue
        rows.append({"phase": name, "start": cursor, "end": cursor + length, "duration": seconds(length)})
        cursor += length
    return rows


def prompt_phase(request: dict) -> str:
    """The prompt's bar, with what the cache held of it: "prompt evaluation (9,800 new, 58,000 cached)", or the tokens
    it read again after the cache was lost."""
    cached, total = request.get("prompt_cached_tokens"), request.get("input_tokens")
    if cached is None or total is None:
        return "prompt evaluation"
    said = f"prompt evaluation ({total - cached:,} new, {cached:,} cached"
    if request.get("cache_miss"):
        said += f"; {request.get('read_again_tokens') or 0:,} read again: cache lost, {request['cache_miss'].replace('_', ' ')}"
    return said + ")"


def prompt_cache(tokens: dict[str, float | None], versions: list[str]) -> str:
    """The window's prompt tokens as "Where the time went" says them: read from the cache, evaluated anew, read again
    after the cache was lost. Where Ollama reports no cache, which release says so (docs/metrics.md, "The prompt cache")."""
    from ollama_otel_stack.ollama_versions import CACHE_REPORTED_SINCE, reports_cache

    cached, new, again = tokens.get("cached"), tokens.get("new"), tokens.get("read_again")
    if _missing(cached) or _missing(new) or not (cached or new):  # type: ignore[operator]
        silent = sorted(version for version in versions if version and not reports_cache(version))
        if silent:
            since = ".".join(map(str, CACHE_REPORTED_SINCE))
            return f"Ollama {', '.join(silent)} does not report its prompt cache ({since} and later do): no cache-hit share or prompt rate on new tokens."
        return f"Prompt cache: {NO_DATA} no prompt tokens with a reported cached count in this window."
    assert cached is not None and new is not None
    said = f"Prompt tokens: {percent(cached / (cached + new))} read from the cache ({count(cached)}), {count(new)} evaluated anew"
    if not _missing(again) and again:
        said += f", of which {count(again)} read again after the cache was lost"
    return said + "."


def runner(labels: dict[str, str]) -> str:
    """A runner's settings (ollama_runner_info's labels): "4 slots × 8,192 tokens, KV f16, flash attention auto, GPU
    layers auto"."""
    slots, context = labels.get("slots", ""), labels.get("context_per_slot", "")
    size = f"{int(slots)} slot{'s' if slots != '1' else ''}" if slots.isdigit() else "slots ?"
    size += f" × {int(context):,} tokens" if context.isdigit() else ""
    return (f"{size}, KV {labels.get('kv_cache_type') or '?'}, flash attention {labels.get('flash_attention') or '?'}, "
            f"GPU layers {labels.get('gpu_layers') or '?'}")
