"""Memory of the alerts engine is bounded: history per device (``ALERTS_HISTORY_MAX_POINTS``)
and open alerts (``ALERTS_MAX_OPEN_ALERTS``, a refusal counted and logged, never a crash)."""

from __future__ import annotations

import logging
from collections import deque

from common.messages import AlertEvent
from common.timestamps import ms_to_iso
from services.alerts.core import AlertRefused, CoreSettings, Inbound, Log, Notify, StateRestored
from services.alerts.rule_engine import RuleEngine
from services.alerts.rules.base import thin
from services.alerts.rules.counter import RateRule
from services.alerts.rules.forecast import ForecastRule
from tests.unit.alerts.helpers import (
    HOUR,
    MIN,
    NONCE,
    T0,
    TOPICS,
    alerts_core,
    bin_full_rules,
    bin_reading,
    meter,
    rules,
    states,
)

FORECAST = """
rules:
  - name: bin_predicted_full
    type: forecast
    within: 12h
    clear_within: 18h
    window: 48h
"""
RATE = """
rules:
  - name: grid_import
    type: rate
    counter: grid_import_wh
    window: 6h
    when: "> 500"
    clear: "< 100"
"""
BIN_FULL = bin_full_rules('clear: "< 60"')


def test_thin_keeps_the_span_and_the_newest_point_at_half_the_resolution() -> None:
    points = deque((t, float(t)) for t in range(11))
    thin(points, 10)
    assert list(points) == [(t, float(t)) for t in (0, 2, 4, 6, 8, 10)]
    thin(points, 10)  # within the bound: untouched
    assert len(points) == 6


def test_a_bin_reporting_every_second_keeps_bounded_history_and_still_forecasts() -> None:
    bounded = RuleEngine(rules(FORECAST), history_max_points=100)
    whole = RuleEngine(rules(FORECAST), history_max_points=1_000_000)  # the oracle
    rule = bounded.rules[0]
    assert isinstance(rule, ForecastRule)
    out, expected = [], []
    # 3 %/h from 40 %, a reading every second for 9 h: 32,400 points in the 48 h window.
    for second in range(0, 9 * 3600 + 1):
        reading = bin_reading("bin-001", T0 + second * 1000, 40 + 3 * second / 3600)
        out += bounded.handle(reading)
        expected += whole.handle(reading)
        assert len(rule.history["bin-001"].points) <= 100
    points = rule.history["bin-001"].points
    assert points[0][0] == T0 and points[-1][0] == T0 + 9 * HOUR  # the whole span kept
    assert bounded.history_points() == len(points) and whole.history_points() > 30_000
    # Fires when the time to full first drops under 12 h, as with the whole history.
    assert states(out) == states(expected) == ["firing"]
    assert out[0].event.ts == expected[0].event.ts
    assert out[0].event.value is not None and expected[0].event.value is not None
    assert abs(out[0].event.value - expected[0].event.value) < 0.05


def test_a_meter_reporting_every_second_keeps_bounded_history_and_the_same_rate() -> None:
    eng = RuleEngine(rules(RATE), history_max_points=64)
    rule = eng.rules[0]
    assert isinstance(rule, RateRule)
    out = []
    for second in range(0, 7 * 3600):
        # 600 Wh per hour: 600 W.
        out += eng.handle(meter(T0 + second * 1000, grid_import_wh=second / 6))
        assert len(rule.state["nzc-meter-1"].points) <= 64
    assert states(out) == ["firing"]
    assert out[0].event.value is not None and abs(out[0].event.value - 600) < 1


def test_alerts_beyond_the_open_bound_are_refused_and_open_once_there_is_room() -> None:
    eng = RuleEngine(rules(BIN_FULL), max_open_alerts=3)
    fired = []
    for n in range(1, 6):
        fired += eng.handle(bin_reading(f"bin-00{n}", T0, 95))
    assert states(fired) == ["firing"] * 3
    assert len(eng.lifecycle.alerts) == 3
    assert eng.lifecycle.take_refused() == {"bin_full": 2}
    assert eng.lifecycle.last_refused == ("bin_full", "ewaste", "bin-005")
    assert states(eng.handle(bin_reading("bin-001", T0 + MIN, 10))) == ["resolved"]
    assert states(eng.handle(bin_reading("bin-005", T0 + MIN, 96))) == ["firing"]  # room again


def _full(device: str, ts_ms: int) -> Inbound:
    topic = TOPICS.telemetry("ewaste", "ewaste_bin", device)
    return Inbound(topic, f'{{"ts": {ts_ms}, "fill_pct": 95, "weight_kg": 30}}'.encode(), 0.0)


def _sync() -> Inbound:
    return Inbound(TOPICS.alerts_sync(), NONCE.encode(), 0.0)


def test_the_core_counts_every_refused_alert_and_warns_once_a_minute() -> None:
    c = alerts_core(BIN_FULL, CoreSettings(max_open_alerts=1))
    c.receive(_sync(), T0)
    assert len([e for e in c.receive(_full("bin-001", T0), T0) if isinstance(e, Notify)]) == 1
    first = c.receive(_full("bin-002", T0), T0)
    assert AlertRefused("bin_full", 1) in first
    (warning,) = [e for e in first if isinstance(e, Log)]
    assert warning.level == logging.WARNING and warning.extra["max_open_alerts"] == 1
    assert warning.extra["device_id"] == "bin-002"
    second = c.receive(_full("bin-003", T0 + 1000), T0 + 1000)
    assert AlertRefused("bin_full", 1) in second
    assert not [e for e in second if isinstance(e, Log)]  # within the minute: counted only
    assert c.refused_alerts == 2 and c.firing_count() == 1


def test_a_retained_alert_beyond_the_open_bound_is_refused_at_restore_and_left_retained() -> None:
    c = alerts_core(BIN_FULL, CoreSettings(max_open_alerts=1))
    for device in ("bin-001", "bin-002"):
        event = AlertEvent(
            rule="bin_full",
            severity="warning",
            site="ewaste",
            device_id=device,
            kind="ewaste_bin",
            state="firing",
            message="full",
            ts=ms_to_iso(T0),
        )
        topic = TOPICS.alert_active("bin_full", "ewaste", device)
        out = c.receive(Inbound(topic, event.model_dump_json().encode(), 0.0, True), T0)
    assert AlertRefused("bin_full", 1) in out
    assert not [e for e in out if type(e).__name__ == "ClearRetained"]
    assert c.receive(_sync(), T0)[0] == StateRestored(1, 0, 0)
