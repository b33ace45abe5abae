"""Issue 13 point 1: ci-smoke's fixed date must never fall out of a bucket's retention.

Re-anchored (``anchor: latest_week``), the scenario plays its day whole weeks later: same
weekday, same local time, a window that has ended and is never older than a week plus its
length - and its expected outcomes still happen, whatever the season it lands in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devices.simulator.expectations import accepted_series, check_all
from devices.simulator.run import resolve_window
from devices.simulator.scenario import WEEK_MS, ScenarioError, load_scenario
from tests.unit.simulator.support import SCENARIOS, TOPICS, registry, run_engine, scenario

KST = timezone(timedelta(hours=9))
TWO_YEARS = timedelta(days=2 * 365 + 1)


def ms(stamp: datetime) -> int:
    return int(stamp.timestamp() * 1000)


@pytest.mark.parametrize("after", [TWO_YEARS, TWO_YEARS + timedelta(days=3, hours=5), timedelta()])
def test_ci_smoke_two_years_after_its_date_plays_the_latest_week(after: timedelta) -> None:
    sc = scenario()
    assert sc.anchor == "latest_week" and sc.start is not None
    now = sc.start + timedelta(seconds=sc.duration_s) + after
    window = resolve_window(sc, now_ms=ms(now))
    start = datetime.fromtimestamp(window.start_ms / 1000, KST)
    fixed = sc.start.astimezone(KST)
    assert (start.weekday(), start.time()) == (fixed.weekday(), fixed.time())
    assert window.end_ms - window.start_ms == int(sc.duration_s * 1000)
    assert window.end_ms <= ms(now)
    # Never older than a week plus the window: any retention of 8 days or more keeps it.
    assert ms(now) - window.start_ms < WEEK_MS + int(sc.duration_s * 1000)


def test_an_explicit_start_is_not_moved() -> None:
    sc = scenario()
    given = datetime(2024, 1, 5, 12, tzinfo=KST)
    window = resolve_window(sc, now_ms=ms(datetime.now(UTC)), start=given)
    assert window.start_ms == ms(given)


@pytest.mark.parametrize("month", [1, 4, 7, 10])
def test_ci_smoke_meets_its_expectations_in_every_season(month: int) -> None:
    sc = scenario()
    assert sc.start is not None
    now = datetime(2027, month, 20, 9, tzinfo=KST)
    start_ms = resolve_window(sc, now_ms=ms(now)).start_ms
    moved = sc.model_copy(update={"start": datetime.fromtimestamp(start_ms / 1000, KST)})
    engine, out = run_engine(moved)
    series = accepted_series(((m.topic, m.payload) for m in out.telemetry()), TOPICS, ms(now))
    outcomes = check_all(sc.expect, series, registry())
    assert all(o.ok for o in outcomes), [o.detail for o in outcomes if not o.ok]
    assert engine.fleet.bins_collected == 2


def test_re_anchored_scenarios_refuse_absolute_event_times(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    text = (SCENARIOS / "ci-smoke.yaml").read_text()
    text = text.replace("at: 6h,", 'at: "2025-06-13T18:00:00+09:00",')
    path = tmp_path / "moved.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match="offsets from the start"):
        load_scenario(str(path))
