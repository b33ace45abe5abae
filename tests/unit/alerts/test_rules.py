"""Each rule type fires and resolves at the right event time (no clocks, no sleeps)."""

from __future__ import annotations

from services.alerts.alert_lifecycle import Transition
from services.alerts.rule_engine import RuleEngine
from services.alerts.rules.absence import AbsenceRule
from services.alerts.rules.forecast import ForecastRule, theil_sen
from tests.unit.alerts.helpers import (
    HOUR,
    MIN,
    T0,
    bin_full_rules,
    bin_reading,
    engine,
    gate,
    meter,
    rules,
    states,
    status,
)

BIN_FULL = bin_full_rules('clear: "< 60"', "for: 2m")


def test_threshold_waits_for_the_for_period_then_fires_once() -> None:
    eng = engine(BIN_FULL)
    assert states(eng.handle(bin_reading("bin-001", T0, 91))) == ["pending"]
    assert eng.handle(bin_reading("bin-001", T0 + MIN, 92)) == []
    fired = eng.handle(bin_reading("bin-001", T0 + 2 * MIN, 93))
    assert states(fired) == ["firing"]
    assert fired[0].event.value == 93
    assert fired[0].event.threshold == 90
    assert eng.handle(bin_reading("bin-001", T0 + 3 * MIN, 95)) == []  # deduplicated


def test_threshold_pending_is_dropped_when_condition_stops_before_for() -> None:
    eng = engine(BIN_FULL)
    eng.handle(bin_reading("bin-001", T0, 91))
    dropped = eng.handle(bin_reading("bin-001", T0 + MIN, 85))
    assert states(dropped) == ["resolved"]
    assert dropped[0].event.started_at is None  # never fired: not news for people
    assert not dropped[0].notifies_people
    assert eng.handle(bin_reading("bin-001", T0 + 5 * MIN, 85)) == []


def test_threshold_fires_on_watermark_from_other_devices() -> None:
    eng = engine(BIN_FULL)
    eng.handle(bin_reading("bin-001", T0, 95))
    # bin-001 reports every 5 min; other bins' readings move event time forward.
    assert eng.handle(bin_reading("bin-002", T0 + 90_000, 10)) == []
    fired = eng.handle(bin_reading("bin-002", T0 + 2 * MIN, 10))
    assert [(t.event.device_id, t.event.state) for t in fired] == [("bin-001", "firing")]


def test_threshold_hysteresis_keeps_firing_between_clear_and_fire_levels() -> None:
    eng = engine(BIN_FULL.replace("for: 2m", "for: 0"))
    assert states(eng.handle(bin_reading("bin-001", T0, 90))) == ["firing"]
    assert eng.handle(bin_reading("bin-001", T0 + MIN, 75)) == []  # 60 <= 75 < 90: hold
    assert eng.handle(bin_reading("bin-001", T0 + 2 * MIN, 89)) == []
    resolved = eng.handle(bin_reading("bin-001", T0 + 3 * MIN, 12))
    assert states(resolved) == ["resolved"]
    assert resolved[0].notifies_people
    assert resolved[0].event.ts.startswith("2025-06-02T00:03:00")


def test_keep_firing_for_delays_resolution_and_a_relapse_cancels_it() -> None:
    eng = engine(BIN_FULL.replace("for: 2m", "keep_firing_for: 10m"))
    eng.handle(bin_reading("bin-001", T0, 95))
    assert eng.handle(bin_reading("bin-001", T0 + MIN, 50)) == []
    assert eng.handle(bin_reading("bin-001", T0 + 5 * MIN, 95)) == []  # relapse: still firing
    assert eng.handle(bin_reading("bin-001", T0 + 6 * MIN, 50)) == []
    assert eng.handle(bin_reading("bin-001", T0 + 15 * MIN, 50)) == []
    assert states(eng.handle(bin_reading("bin-001", T0 + 16 * MIN, 50))) == ["resolved"]


def test_repeat_renotifies_a_still_firing_alert() -> None:
    eng = engine(BIN_FULL.replace("for: 2m", "repeat: 1h"))
    eng.handle(bin_reading("bin-001", T0, 95))
    assert eng.handle(bin_reading("bin-001", T0 + 59 * MIN, 95)) == []
    again = eng.handle(bin_reading("bin-001", T0 + 60 * MIN, 95))
    assert states(again) == ["firing"]
    assert again[0].repeat


def test_selector_by_zone_uses_the_registry() -> None:
    eng = engine(
        BIN_FULL.replace("kind: ewaste_bin", "zone: haan").replace("for: 2m", "for: 0"),
        with_registry=True,
    )
    assert eng.handle(bin_reading("bin-001", T0, 95)) == []  # cheolsan
    assert states(eng.handle(bin_reading("bin-025", T0, 95))) == ["firing"]  # haan


ABSENCE = """
rules:
  - name: device_offline
    type: absence
    after: 15m
"""


def test_absence_fires_on_the_watermark_and_clears_when_the_device_reports() -> None:
    eng = engine(ABSENCE)
    eng.handle(bin_reading("bin-001", T0, 10))
    eng.handle(bin_reading("bin-002", T0, 10))
    for minute in range(5, 15, 5):
        assert eng.handle(bin_reading("bin-002", T0 + minute * MIN, 10)) == []
    fired = eng.handle(bin_reading("bin-002", T0 + 15 * MIN, 10))
    assert [(t.event.device_id, t.event.state) for t in fired] == [("bin-001", "firing")]
    back = eng.handle(bin_reading("bin-001", T0 + 16 * MIN, 10))
    assert [(t.event.device_id, t.event.state) for t in back] == [("bin-001", "resolved")]


def test_absence_waits_allowed_lateness_for_a_device_behind_the_watermark() -> None:
    # One connection per device: in a backfill bin-002's readings ran 16 min ahead of
    # bin-001's, which were still on their way. That is skew, not silence.
    def skewed(lateness_ms: int) -> tuple[RuleEngine, list[Transition]]:
        eng = RuleEngine(rules(ABSENCE), None, allowed_lateness_ms=lateness_ms)
        eng.handle(bin_reading("bin-001", T0, 10))
        return eng, eng.handle(bin_reading("bin-002", T0 + 16 * MIN, 10))

    _, without = skewed(0)
    assert [(t.event.device_id, t.event.state) for t in without] == [("bin-001", "firing")]
    eng, ahead = skewed(2 * MIN)
    assert ahead == []
    assert eng.handle(bin_reading("bin-001", T0 + 5 * MIN, 10)) == []  # the late reading
    assert eng.handle(bin_reading("bin-002", T0 + 21 * MIN, 10)) == []  # 14 min on the watermark
    # bin-001 really went quiet after T0+5: it fires once watermark - lateness passes +15 min.
    fired = eng.handle(bin_reading("bin-002", T0 + 22 * MIN, 10))
    assert [(t.event.device_id, t.event.state) for t in fired] == [("bin-001", "firing")]
    assert "15.0 min" in fired[0].event.message


def test_absence_offline_status_fires_at_once_and_online_clears() -> None:
    eng = engine(ABSENCE)
    assert states(eng.handle(status("bin-003", T0, online=False))) == ["firing"]
    assert states(eng.handle(status("bin-003", T0 + MIN, online=True))) == ["resolved"]


def test_absence_expects_registered_devices_that_never_spoke() -> None:
    eng = engine(ABSENCE.replace("after: 15m", "after: 15m\n    select: {device: bin-044}"), True)
    eng.tick(T0)
    fired = eng.tick(T0 + 15 * MIN)
    assert [(t.event.device_id, t.event.state) for t in fired] == [("bin-044", "firing")]


def test_a_reading_older_than_its_bins_collection_neither_refires_nor_feeds_forecast() -> None:
    more = (FORECAST + ABSENCE).replace("rules:\n", "")
    eng = RuleEngine(rules(BIN_FULL + more))
    for minute in range(0, 240, 5):
        eng.handle(bin_reading("bin-001", T0 + minute * MIN, 60 + minute / 7))
    assert eng.lifecycle.get(("bin_full", "ewaste", "bin-001")) is not None
    collected = T0 + 245 * MIN
    eng.collected("ewaste", "bin-001", collected)
    assert eng.resolve(("bin_full", "ewaste", "bin-001"), collected, "collected") is not None
    # A pre-collection reading arrives late (its own connection lagged behind the truck's):
    assert eng.handle(bin_reading("bin-001", T0 + 242 * MIN, 96)) == []
    ahead = eng.handle(bin_reading("bin-002", collected + 5 * MIN, 10))
    assert not [t for t in ahead if t.event.device_id == "bin-001"]
    assert eng.lifecycle.get(("bin_full", "ewaste", "bin-001")) is None
    forecast = next(r for r in eng.rules if r.spec.name == "bin_predicted_full")
    assert isinstance(forecast, ForecastRule) and "bin-001" not in forecast.history
    absence = next(r for r in eng.rules if r.spec.name == "device_offline")
    assert isinstance(absence, AbsenceRule)
    assert absence.seen["bin-001"].last_ms == T0 + 242 * MIN  # still a sign of life
    assert eng.stats.superseded == 1
    # After the collection its readings count again.
    assert eng.handle(bin_reading("bin-001", collected + 6 * MIN, 1)) == []


FORECAST = """
rules:
  - name: bin_predicted_full
    type: forecast
    within: 12h
    clear_within: 18h
    min_points: 4
    min_span: 1h
"""


def test_theil_sen_ignores_a_single_outlier() -> None:
    points = [(i * HOUR, 10.0 + 2 * i) for i in range(10)]
    points[5] = (5 * HOUR, 90.0)
    slope, level = theil_sen(points)
    assert abs(slope * HOUR - 2.0) < 1e-9
    assert abs(level - 28.0) < 1e-9


def test_forecast_fires_when_time_to_full_drops_under_the_horizon() -> None:
    eng = engine(FORECAST)
    # 3 %/h from 40 %: full (100 %) 20 h after the start; 12 h left at hour 8, 11 h at 9.
    out = []
    for hour in range(0, 10):
        out += eng.handle(bin_reading("bin-001", T0 + hour * HOUR, 40 + 3 * hour))
        if hour < 9:
            assert out == [], hour
    assert states(out) == ["firing"]
    assert out[0].event.value is not None and abs(out[0].event.value - 11) < 0.01
    assert "predicted 100 % in" in out[0].event.message


def test_forecast_is_robust_to_a_single_drop_off_and_resets_on_collection() -> None:
    eng = engine(FORECAST)
    out = []
    for hour in range(0, 10):
        out += eng.handle(bin_reading("bin-001", T0 + hour * HOUR, 40 + 3 * hour))
    assert states(out) == ["firing"]
    # One glitchy reading near zero, then back on the trend: no collection, still firing.
    assert eng.handle(bin_reading("bin-001", T0 + 10 * HOUR, 2)) == []
    assert eng.handle(bin_reading("bin-001", T0 + 11 * HOUR, 73)) == []
    # A real collection: the level stays low -> resolved and history restarted.
    assert eng.handle(bin_reading("bin-001", T0 + 12 * HOUR, 3)) == []
    resolved = eng.handle(bin_reading("bin-001", T0 + 13 * HOUR, 4))
    assert states(resolved) == ["resolved"]
    assert "collected" in resolved[0].event.message


def test_forecast_holds_between_horizons() -> None:
    eng = engine(FORECAST)
    # 1 %/h from 70 % = 30 h to full: nothing; slope doubles: ~ 10 h -> fire.
    for hour in range(0, 4):
        assert eng.handle(bin_reading("bin-001", T0 + hour * HOUR, 70 + hour)) == []
    for hour in range(4, 8):
        eng.handle(bin_reading("bin-001", T0 + hour * HOUR, 73 + 2.5 * (hour - 3)))
    assert eng.lifecycle.get(("bin_predicted_full", "ewaste", "bin-001")) is not None


GRID = """
rules:
  - name: grid_import_while_pv
    type: rate
    counter: grid_import_wh
    window: 10m
    when: "> 500"
    clear: "< 100"
    require: {pv_power_w: "> 2000"}
    hours: ["08:00", "17:00"]
"""


def test_rate_fires_on_counter_rate_and_survives_a_counter_reset() -> None:
    eng = engine(GRID, with_registry=True)  # nzc in Asia/Seoul: T0 is 09:00 local
    total = 1000.0
    out = []
    for minute in range(0, 11):
        out += eng.handle(meter(T0 + minute * MIN, grid_import_wh=total, pv_power_w=5000))
        total += 10  # 10 Wh/min = 600 W
    assert states(out) == ["firing"]
    assert out[0].event.value is not None and abs(out[0].event.value - 600) < 1
    # Meter restarts: the counter falls to 5; not a negative rate, not a new alert.
    out = eng.handle(meter(T0 + 11 * MIN, grid_import_wh=5.0, pv_power_w=5000))
    assert out == []
    # Import stops: the rate decays below 100 W over the window -> resolved.
    out = []
    for minute in range(12, 30):
        out += eng.handle(meter(T0 + minute * MIN, grid_import_wh=5.0, pv_power_w=5000))
    assert states(out) == ["resolved"]


def test_rate_guard_and_hours_clear_the_alert() -> None:
    eng = engine(GRID, with_registry=True)
    for minute in range(0, 11):
        eng.handle(meter(T0 + minute * MIN, grid_import_wh=10.0 * minute, pv_power_w=5000))
    out = eng.handle(meter(T0 + 11 * MIN, grid_import_wh=110.0, pv_power_w=100))  # cloud
    assert states(out) == ["resolved"]
    # 18:00 local (09:00 UTC): outside hours, never fires.
    late = T0 + 9 * HOUR
    out = []
    for minute in range(0, 20):
        out += eng.handle(
            meter(late + minute * MIN, grid_import_wh=500 + 20.0 * minute, pv_power_w=5000)
        )
    assert out == []


BALANCE = """
rules:
  - name: net_zero_missed
    type: daily_balance
    produced: pv_energy_wh
    consumed: load_energy_wh
"""


def _day(
    eng: RuleEngine, start_ms: int, pv_per_h: float, load_per_h: float, pv0: float, load0: float
) -> tuple[list[Transition], float, float]:
    out: list[Transition] = []
    pv, load = pv0, load0
    for hour in range(24):
        out += eng.handle(meter(start_ms + hour * HOUR, pv_energy_wh=pv, load_energy_wh=load))
        pv += pv_per_h
        load += load_per_h
    return out, pv, load


def test_daily_balance_fires_after_a_deficit_day_and_clears_after_a_surplus_day() -> None:
    eng = engine(BALANCE, with_registry=True)
    midnight = T0 - 9 * HOUR  # 00:00 in Seoul
    out, pv, load = _day(eng, midnight, 1000, 1500, 0, 0)
    assert out == []  # the day is judged when it is over
    out, pv, load = _day(eng, midnight + 24 * HOUR, 2000, 1500, pv, load)
    assert states(out) == ["firing"]
    assert out[0].event.value == -12000.0
    # A meter reset in the middle of day 3 must not look like a huge deficit.
    out3 = []
    for hour in range(24):
        if hour == 12:
            pv, load = 0.0, 0.0
        out3 += eng.handle(
            meter(midnight + 48 * HOUR + hour * HOUR, pv_energy_wh=pv, load_energy_wh=load)
        )
        pv += 2000
        load += 1500
    assert states(out3) == ["resolved"]  # day 2 surplus (+12 kWh) judged at day 3's start
    out4 = eng.handle(meter(midnight + 72 * HOUR, pv_energy_wh=pv, load_energy_wh=load))
    assert out4 == []  # day 3 had a surplus too, despite the reset


OCCUPANCY = """
rules:
  - name: occupancy_over_capacity
    type: occupancy
    select: {site: uac}
    capacity: 100
    over_pct: 100
    clear_pct: 90
    reset_at: "18:00"
"""


def test_occupancy_sums_gates_fires_over_capacity_and_clears_with_hysteresis() -> None:
    eng = engine(OCCUPANCY, with_registry=True)
    eng.handle(gate("uac-gate-main", T0, 1000, 1000))  # baselines
    eng.handle(gate("uac-gate-east", T0, 50, 50))
    assert eng.handle(gate("uac-gate-main", T0 + MIN, 1080, 1000)) == []  # 80 inside
    fired = eng.handle(gate("uac-gate-east", T0 + 2 * MIN, 75, 50))  # 105
    assert states(fired) == ["firing"]
    assert fired[0].event.device_id == "uac" and fired[0].event.value == 105
    assert eng.handle(gate("uac-gate-main", T0 + 3 * MIN, 1080, 1010)) == []  # 95: hold
    assert states(eng.handle(gate("uac-gate-main", T0 + 4 * MIN, 1080, 1030))) == ["resolved"]


def test_occupancy_clamps_at_zero_handles_resets_and_resets_at_closing() -> None:
    eng = engine(OCCUPANCY, with_registry=True)
    rule = eng.rules[0]
    eng.handle(gate("uac-gate-main", T0, 100, 100))
    eng.handle(gate("uac-gate-main", T0 + MIN, 100, 130))  # more exits than entries: drift
    assert rule.occupancy("uac") == 0  # type: ignore[attr-defined]
    eng.handle(gate("uac-gate-main", T0 + 2 * MIN, 150, 130))  # +50 from the clamped zero
    assert rule.occupancy("uac") == 50  # type: ignore[attr-defined]
    eng.handle(gate("uac-gate-main", T0 + 3 * MIN, 7, 0))  # counter restarted: +7
    assert rule.occupancy("uac") == 57  # type: ignore[attr-defined]
    # 18:00 local is 09:00 UTC: closing resets whatever is left.
    eng.handle(gate("uac-gate-main", T0 + 9 * HOUR + MIN, 7, 1))
    assert rule.occupancy("uac") == 0  # type: ignore[attr-defined]
