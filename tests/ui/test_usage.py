"""ui/usage.py's table from its daily points: the records' days and the hours not recorded yet add up."""

from __future__ import annotations

from ui.usage import _table

DAY = 1_796_688_000.0  # 2026-12-08T00:00:00Z: the end of 2026-12-07


def test_a_days_records_and_its_unrecorded_hours_add_up_energy_shared_by_both():
    a, b = {"host": "gpu", "gen_ai_request_model": "a:1b"}, {"host": "gpu", "gen_ai_request_model": "b:7b"}
    daily = {
        "requests": [(a, DAY, 10.0), (a, DAY, 2.0), (b, DAY, 4.0)],  # a's records, then its hour not recorded yet
        "input_tokens": [(a, DAY, 100.0), (a, DAY, 20.0), (b, DAY, 40.0)],
        "output_tokens": [(a, DAY, 50.0), (a, DAY, 10.0), (b, DAY, 20.0)],
        "generation_s": [(a, DAY, 30.0), (a, DAY, 30.0), (b, DAY, 60.0)],
    }
    energy = [({"host": "gpu"}, DAY, 3_600_000.0), ({"host": "gpu"}, DAY, 3_600_000.0)]  # 1 kWh recorded, 1 kWh since
    rows = {row["model"]: row for row in _table("model", daily, energy, "day", None)}
    assert (rows["a:1b"]["requests"], rows["a:1b"]["input_tokens"], rows["a:1b"]["generation_s"]) == (12, 120, 60.0)
    assert rows["a:1b"]["energy_kwh"] == 1.0 and rows["b:7b"]["energy_kwh"] == 1.0  # 60 s each of 120 s, of 2 kWh
    assert rows["all"]["energy_kwh"] == 2.0 and rows["all"]["requests"] == 16
