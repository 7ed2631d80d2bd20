"""The cards at the top of the page: what each shows, the PromQL behind it, how its number reads, and what it says
when there is none. Rates are over the window the page passes (UI_CARD_WINDOW, a minute by default)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hw_collector import instruments
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
    ratio: bool = False  # a share, 0..1: its change reads in percentage points
    measured_by: tuple[str, ...] = ()  # the collector's sources behind it: one active with no reading yet is said so
    grafana_unit: str | None = None  # Grafana's unit of its twin stat panel (ui/grafana.py); None: the page's alone
    grafana_title: str = ""  # the twin's title, where it is not the label

    def change(self, now: float, before: float) -> str:
        """How the value moved since a window ago, as the card shows it."""
        return f"{(now - before) * 100:+.1f} pts" if self.ratio else self.show(now - before)

    def why_missing(self, sources_up: dict[str, float]) -> str:
        active = [source for source in self.measured_by if sources_up.get(source)]
        return f"{' and '.join(active)} active, no reading yet" if active else self.missing


CARDS = (
    Card("Requests/s", queries.request_rate, lambda v: fmt.rate(v, "/s"), "no traffic yet", grafana_unit="reqps"),
    Card("Avg latency", queries.average_latency, fmt.seconds, "no generation requests in the last minute", False),
    Card("Success rate", queries.success_rate, fmt.percent, "no traffic yet", ratio=True, grafana_unit="percentunit"),
    Card("Tokens/s", queries.tokens_per_second, lambda v: fmt.rate(v, "tok/s"), "no tokens generated in the last minute", grafana_unit="short"),
    Card("TTFT p95", lambda f, window: queries.time_to_first_token_quantile(0.95, f, window), fmt.seconds, "no streaming generations in the last minute", False,
         grafana_unit="s", grafana_title="Time to first token p95"),
    Card("GPU", lambda f, _: queries.gpu_utilization(f), fmt.percent, "no GPU source on this host", ratio=True,
         measured_by=instruments.sources_measuring(instruments.GPU_UTILIZATION), grafana_unit="percentunit"),
    Card("Power", lambda f, _: queries.power_watts(f), fmt.watts, "no power source on this host", False,
         measured_by=instruments.sources_measuring(instruments.POWER), grafana_unit="watt"),
    Card("Memory used", lambda f, _: queries.memory(f)["share"], fmt.percent, "hardware collector not scraped", False,
         ratio=True, grafana_unit="percentunit"),
    Card("Active requests", lambda f, _: queries.active_requests(f), fmt.count, "proxy not scraped"),
    Card("Temperature", lambda f, _: queries.temperature_celsius(f), fmt.celsius, "no temperature sensor on this host", False,
         measured_by=instruments.sources_measuring(instruments.TEMPERATURE), grafana_unit="celsius"),
)
