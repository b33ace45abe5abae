"""Physical sanity of the device models, as plain objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from common.devices import Registry
from devices.simulator.models import EnergyMeter, EwasteBin, ModelContext, VisitorCounter
from tests.unit.simulator.support import TOPICS, registry, run_engine, scenario

KST = timedelta(hours=9)
MINUTE = 60_000


def _ctx(reg: Registry, device_id: str, start: datetime, **kw: dict[str, float]) -> ModelContext:
    device = reg.device(device_id)
    assert device is not None
    site = reg.site(device.site)
    assert site is not None
    return ModelContext(device, site, 5, int(start.timestamp() * 1000), **kw)


def test_pv_is_zero_at_night_and_peaks_near_solar_noon() -> None:
    reg = registry()
    start = datetime(2025, 6, 21, 0, 0, tzinfo=UTC) - KST  # local midnight
    meter = EnergyMeter(_ctx(reg, "nzc-meter-1", start))
    t0 = int(start.timestamp() * 1000)
    pv = [(t, meter.reading(t)["pv_power_w"]) for t in range(t0, t0 + 1440 * MINUTE, 5 * MINUTE)]
    local_hour = {t: ((t - t0) / 3_600_000) for t, _ in pv}
    night = [p for t, p in pv if local_hour[t] < 4.5 or local_hour[t] > 20.5]
    assert night and all(p == 0 for p in night)
    peak_t, peak = max(pv, key=lambda item: item[1])
    # Solar noon at 126.9 E in June is about 12:30 KST; clouds may move the maximum a little.
    assert 10.5 <= local_hour[peak_t] <= 14.5
    assert 5_000 < peak <= 20_000


def test_energy_counters_integrate_the_reported_power() -> None:
    reg = registry()
    start = datetime(2025, 3, 10, 0, 0, tzinfo=UTC)
    meter = EnergyMeter(_ctx(reg, "nzc-meter-1", start))
    t0 = int(start.timestamp() * 1000)
    prev = meter.reading(t0)
    for t in range(t0 + MINUTE, t0 + 1440 * MINUTE, MINUTE):
        now = meter.reading(t)
        for power, energy in (("pv_power_w", "pv_energy_wh"), ("load_power_w", "load_energy_wh")):
            expected = (float(prev[power]) + float(now[power])) / 2 / 60
            assert abs(float(now[energy]) - float(prev[energy]) - expected) < 0.2
        grid = (float(now["grid_import_wh"]) - float(prev["grid_import_wh"])) - (
            float(now["grid_export_wh"]) - float(prev["grid_export_wh"])
        )
        assert abs(grid - (float(prev["grid_power_w"]) + float(now["grid_power_w"])) / 120) < 0.5
        prev = now
    assert float(prev["load_energy_wh"]) > 24 * 2_000  # at least the base load all day


def test_cumulative_counters_only_decrease_at_an_injected_reset() -> None:
    sc = scenario(faults={})
    _, out = run_engine(sc)
    reset_topic = TOPICS.telemetry("uac", "visitor_counter", "uac-gate-main")
    last: dict[tuple[str, str], float] = {}
    decreases: list[tuple[str, str]] = []
    for message in out.telemetry():
        payload = json.loads(message.payload)
        for name in ("entries_total", "exits_total", "pv_energy_wh", "load_energy_wh",
                     "grid_import_wh", "grid_export_wh"):  # fmt: skip
            if name in payload:
                key = (message.topic, name)
                if key in last and payload[name] < last[key]:
                    decreases.append(key)
                last[key] = payload[name]
    assert decreases, "the scenario's counter_reset must show"
    assert {topic for topic, _ in decreases} == {reset_topic}


def test_occupancy_is_entries_minus_exits_and_drifts_within_the_counting_error() -> None:
    reg = registry()
    start = datetime(2025, 6, 14, 0, 0, tzinfo=UTC) - KST  # a Saturday, local midnight
    gate = VisitorCounter(_ctx(reg, "uac-gate-main", start, params={"count_miss_rate": 0.02}))
    t0 = int(start.timestamp() * 1000)
    prev_entries = prev_exits = 0
    for t in range(t0, t0 + 1440 * MINUTE, MINUTE):
        r = gate.reading(t)
        entries, exits = int(r["entries_total"]), int(r["exits_total"])
        assert entries >= prev_entries and exits >= prev_exits
        assert r["occupancy"] == max(0, entries - exits)
        passages = gate.true_entries + gate.true_exits
        bound = 3 * (gate.miss_rate + gate.double_rate) * passages + 5
        assert abs((entries - exits) - gate.inside) <= bound
        prev_entries, prev_exits = entries, exits
    assert gate.true_entries > 300  # a Saturday brings people
    assert gate.inside == 0  # everyone is out after closing


def test_bin_fills_in_dropoffs_then_stays_at_100_and_counts_overflow() -> None:
    reg = registry()
    start = datetime(2025, 6, 14, 0, 0, tzinfo=UTC)
    full = EwasteBin(_ctx(reg, "bin-012", start, initial={"fill_pct": 97.0}))
    t0 = int(start.timestamp() * 1000)
    weights = []
    for t in range(t0, t0 + 3 * 1440 * MINUTE, 5 * MINUTE):
        r = full.reading(t)
        weights.append(float(r["weight_kg"]))
        assert 0 <= float(r["fill_pct"]) <= 100
    assert weights == sorted(weights)  # nothing leaves a bin without a truck
    assert full.fill_pct == 100.0
    assert full.overflow_s > 3600
    assert full.overflow_kg > 0  # what did not fit was left beside it


def test_collecting_a_bin_empties_it_and_its_next_reading_shows_it() -> None:
    reg = registry()
    start = datetime(2025, 6, 14, 0, 0, tzinfo=UTC)
    bin_model = EwasteBin(_ctx(reg, "bin-001", start, initial={"fill_pct": 80.0}))
    t0 = int(start.timestamp() * 1000)
    before = float(bin_model.reading(t0)["weight_kg"])
    taken = bin_model.collect(t0 + MINUTE)
    after = float(bin_model.reading(t0 + 2 * MINUTE)["weight_kg"])
    assert before > 150
    assert after < 0.5
    assert abs(taken - (before - after)) < 0.01  # readings are rounded to 10 g
