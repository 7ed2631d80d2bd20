"""ui/settings.py: the dashboard's one settings object, from the environment; and the price it carries (ui/usage.py)."""

from __future__ import annotations

import pytest

from ui import settings
from ui.usage import Price, price_of


def test_each_variable_sets_its_setting_and_an_empty_one_keeps_the_default():
    assert settings.read({}) == settings.DEFAULTS
    assert settings.DEFAULTS.prometheus_url == "http://127.0.0.1:9090" and settings.DEFAULTS.proxy_url == "http://127.0.0.1:8001"
    read = settings.read({"PROMETHEUS_URL": "http://prom:9090", "PROXY_URL": "", "UI_CARD_WINDOW": "10s", "STATUS_TIMEOUT": "2.5",
                          "UI_PROXY_JOB": "gateway", "USAGE_PRICE_PER_KWH": "0.3", "USAGE_CURRENCY": "EUR"})
    assert (read.prometheus_url, read.proxy_url, read.card_window, read.status_timeout_s, read.proxy_job, read.collector_job) == \
        ("http://prom:9090", "http://127.0.0.1:8001", "10s", 2.5, "gateway", "hw-collector")
    with pytest.raises(settings.SettingsError, match="STATUS_TIMEOUT='soon' is not a number of seconds"):
        settings.read({"STATUS_TIMEOUT": "soon"})


def test_a_price_needs_its_currency_and_a_number():
    assert price_of("", "") is None and price_of("", "EUR") is None
    assert price_of("0.25", "EUR") == Price(0.25, "EUR")
    with pytest.raises(ValueError, match="a price per kWh needs its currency"):
        price_of("0.25", "")
    with pytest.raises(ValueError, match="USAGE_PRICE_PER_KWH='cheap' is not a number"):
        price_of("cheap", "EUR")
