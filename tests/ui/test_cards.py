"""ui/cards.py: what each card says when it has no number, and how its change reads."""

from __future__ import annotations

from ui.cards import CARDS

BY_LABEL = {card.label: card for card in CARDS}


def test_a_card_without_a_number_names_the_active_source_that_has_not_read_yet():
    gpu, power, memory = BY_LABEL["GPU"], BY_LABEL["Power"], BY_LABEL["Memory used"]
    assert gpu.why_missing({}) == "no GPU source on this host"
    assert gpu.why_missing({"nvml": 0.0, "rapl": 1.0}) == "no GPU source on this host"  # failing NVML, and RAPL measures no GPU
    assert gpu.why_missing({"macmon": 1.0}) == "macmon active, no reading yet"
    assert power.why_missing({"rapl": 1.0, "nvml": 1.0}) == "nvml and rapl active, no reading yet"
    assert memory.why_missing({"psutil": 1.0}) == "hardware collector not scraped"  # no source list: its own reason


def test_a_shares_change_reads_in_points_and_the_rest_in_their_own_unit():
    assert [card.label for card in CARDS if card.ratio] == ["Success rate", "GPU", "Memory used"]
    assert BY_LABEL["Success rate"].change(0.95, 0.99) == "-4.0 pts"
    assert BY_LABEL["Avg latency"].change(1.5, 1.0) == BY_LABEL["Avg latency"].show(0.5)
