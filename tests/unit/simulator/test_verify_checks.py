"""``facility-simulator verify``'s verdicts on plain data: exact stored counts, the honest
overflow-or-collected rule, and dead-letter comparison."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from common.settings import load_settings
from devices.simulator.run import resolve_window, run_scenario
from devices.simulator.scenario import load_scenario
from devices.simulator.settings import SimulatorSettings
from devices.simulator.verify_checks import Expected, Observed, expected_from_replay, judge


def _expected(tmp_path: Path) -> Expected:
    settings = load_settings(SimulatorSettings)
    scenario = load_scenario("ci-smoke")
    assert scenario.start is not None
    # "now" at the end of the scenario's own window: the anchor leaves the dated window as is.
    window = resolve_window(
        scenario, now_ms=int((scenario.start.timestamp() + scenario.duration_s) * 1000)
    )
    replay_file = tmp_path / "replay.jsonl"
    replay = run_scenario(settings, scenario, window, seed=None, stop=threading.Event(),
                          output=replay_file)  # fmt: skip
    return expected_from_replay(scenario, settings, window, replay, replay_file)


def _observed(expected: Expected, **changes: object) -> Observed:
    points = {key: set(stamps) for key, stamps in expected.points.items()}
    observed = Observed(points, {}, [], [], {}, None)
    for name, value in changes.items():
        setattr(observed, name, value)
    return observed


def _by_name(checks: list, name: str):  # type: ignore[no-untyped-def,type-arg]
    return next(c for c in checks if c.name == name)


def test_replay_expects_every_accepted_reading_and_the_fault_rejections(tmp_path: Path) -> None:
    expected = _expected(tmp_path)
    total = sum(len(s) for s in expected.points.values())
    # 8477 messages, 12 rejected, 2 duplicates overwrite their twin: 8463 distinct points.
    assert total == expected.replay["messages_total"] - 12 - 2
    assert expected.rejections == Counter(expected.replay["expected_rejections"])
    assert expected.scripted_dispatches == {"ci-smoke-4": ("bin-001", "bin-002")}


def test_a_missing_reading_fails_the_stored_check(tmp_path: Path) -> None:
    expected = _expected(tmp_path)
    observed = _observed(expected)
    observed.points[("energy", "nzc-meter-1")].pop()
    checks = judge(expected, observed, None, None)
    assert not _by_name(checks, "stored energy").ok
    assert "nzc-meter-1 missing 1" in _by_name(checks, "stored energy").detail
    assert _by_name(checks, "stored visitors").ok


def test_overflow_expectation_accepts_a_truck_that_came_first(tmp_path: Path) -> None:
    expected = _expected(tmp_path)
    full_then_emptied = [(1, {"fill_pct": 99.5, "weight_kg": 280.0}),
                         (2, {"fill_pct": 0.1, "weight_kg": 0.2})]  # fmt: skip
    never_full = [(1, {"fill_pct": 40.0, "weight_kg": 100.0})]
    ok = judge(expected, _observed(expected, series={"bin-005": full_then_emptied}), None, None)
    bad = judge(expected, _observed(expected, series={"bin-005": never_full}), None, None)
    assert _by_name(ok, "bin_overflows bin-005").ok
    assert not _by_name(bad, "bin_overflows bin-005").ok


def test_dead_letters_compare_with_ingest_counts_when_given(tmp_path: Path) -> None:
    expected = _expected(tmp_path)
    enough = Counter(expected.rejections) + Counter({"invalid_json": 5})
    short = Counter(expected.rejections) - Counter({"wrong_type": 1})
    assert (
        _by_name(judge(expected, _observed(expected), None, None), "dead-lettered").result == "SKIP"
    )
    assert _by_name(judge(expected, _observed(expected, rejected=enough), None, None),
                    "dead-lettered").ok  # fmt: skip
    assert not _by_name(judge(expected, _observed(expected, rejected=short), None, None),
                        "dead-lettered").ok  # fmt: skip


def test_a_mid_window_offline_alarm_and_an_undriven_dispatch_fail(tmp_path: Path) -> None:
    expected = _expected(tmp_path)
    start, end = expected.window.start_ms, expected.window.end_ms
    alarm = {"rule": "device_offline", "state": "firing", "device_id": "bin-010",
             "time": start + 3_600_000}  # fmt: skip
    at_end = {**alarm, "time": end}  # the end-of-run 'offline' statuses are real
    planned = {"state": "planned", "zone": "cheolsan", "dispatch_id": "d1", "time": start}
    done = {**planned, "state": "completed"}
    tail = {**planned, "dispatch_id": "d2", "time": end - 60_000}  # too late to be driven

    def verdict(alerts: list[object], dispatches: list[object], name: str) -> bool:
        observed = _observed(expected, alerts=alerts, dispatches=dispatches)
        return bool(_by_name(judge(expected, observed, None, None), name).ok)

    assert not verdict([alarm], [], "device_offline elsewhere")
    assert verdict([at_end], [], "device_offline elsewhere")
    assert not verdict([], [planned], "alert dispatches completed")
    assert verdict([], [planned, done, tail], "alert dispatches completed")
