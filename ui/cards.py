"""The cards at the top of the page: what each shows, the PromQL behind it, how its number reads, and what it says
when there is none. Rates are over the window the page passes (UI_CARD_WINDOW, a minute by default)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ui import format as fmt
from ui import queries
from ui.queries import Filters

@dataclass(frozen=True)
class Card:
    label: str
    query: Callable[[Filters, str], str]  # the host and model picked, and the window of the rates
    show: Callable[[float | None], str]
    missing: str  # why there is no number, when there is none
    higher_is_better: bool = True


CARDS = (
    Card("Requests/s", queries.request_rate, lambda v: fmt.rate(v, "/s"), "no traffic yet"),
    Card("Avg latency", queries.average_latency, fmt.seconds, "no generation requests in the last minute", False),
    Card("Success rate", queries.success_rate, fmt.percent, "no traffic yet"),
    Card("Tokens/s", queries.tokens_per_second, lambda v: fmt.rate(v, "tok/s"), "no tokens generated in the last minute"),
    Card("TTFT p95", lambda f, window: queries.time_to_first_token_quantile(0.95, f, window), fmt.seconds, "no streaming generations in the last minute", False),
    Card("GPU", lambda f, _: queries.gpu_utilization(f), fmt.percent, "no GPU source on this host"),
    Card("Power", lambda f, _: queries.power_watts(f), fmt.watts, "no power source on this host", False),
    Card("Memory used", lambda f, _: f"{queries.memory_used_bytes(f)} / {queries.memory_limit_bytes(f)}", fmt.percent, "hardware collector not scraped", False),
    Card("Active requests", lambda f, _: queries.active_requests(f), fmt.count, "proxy not scraped"),
    Card("Temperature", lambda f, _: queries.temperature_celsius(f), fmt.celsius, "no temperature sensor on this host", False),
)
