"""Crew shifts, the longest trip and bins' access windows, as the simulator's trucks keep them."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from devices.simulator.models import EwasteBin, ModelContext
from devices.simulator.shifts import Shifts, Window, window_wait_ms
from devices.simulator.trucks import Fleet
from tests.unit.simulator.support import registry
from tests.unit.simulator.test_trucks import _request

SEOUL = ZoneInfo("Asia/Seoul")
WEEKDAYS = Shifts.parse(
    {"days": ["mon", "tue", "wed", "thu", "fri"], "blocks": ["08:00-12:00", "13:00-17:00"]},
    SEOUL,
)


def _ms(y: int, m: int, d: int, hh: int, mm: int = 0) -> int:
    return int(datetime(y, m, d, hh, mm, tzinfo=SEOUL).timestamp() * 1000)


def _local(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, SEOUL)


def _fleet(ids: list[str], windows: dict[str, Window] | None = None) -> Fleet:
    reg = registry()
    bins = {}
    for device_id in ids:
        device = reg.device(device_id)
        assert device is not None
        site = reg.site(device.site)
        assert site is not None
        ctx = ModelContext(device, site, 1, _ms(2026, 6, 1, 0), initial={"fill_pct": 50.0})
        bins[device_id] = EwasteBin(ctx)
    return Fleet(reg, bins, WEEKDAYS, windows)


def _inside_a_block(start_ms: int, end_ms: int) -> bool:
    return any(
        b.start_ms <= start_ms and end_ms <= b.end_ms
        for b in WEEKDAYS.blocks_between(start_ms, end_ms)
    )


def test_a_week_has_ten_blocks_of_four_hours_around_lunch() -> None:
    blocks = list(WEEKDAYS.blocks_between(_ms(2026, 6, 1, 0), _ms(2026, 6, 8, 0)))  # Mon..Sun
    assert len(blocks) == 10
    assert all(b.end_ms - b.start_ms == 4 * 3_600_000 for b in blocks)
    assert {(_local(b.start_ms).hour, _local(b.end_ms).hour) for b in blocks} == {
        (8, 12),
        (13, 17),
    }


def test_a_request_on_saturday_waits_for_monday_morning() -> None:
    fleet = _fleet(["bin-001", "bin-002"])
    saturday = _ms(2026, 6, 6, 10)
    run = fleet.plan(_request(["bin-001", "bin-002"]), saturday)
    assert run.fits
    assert _local(run.start_ms) == datetime(2026, 6, 8, 8, 0, tzinfo=SEOUL)
    assert _inside_a_block(run.start_ms, run.return_ms)


def test_a_run_that_would_cross_lunch_starts_after_it() -> None:
    fleet = _fleet(["bin-001", "bin-002"])
    run = fleet.plan(_request(["bin-001", "bin-002"]), _ms(2026, 6, 1, 11, 40))
    assert _local(run.start_ms) == datetime(2026, 6, 1, 13, 0, tzinfo=SEOUL)
    assert _inside_a_block(run.start_ms, run.return_ms)


def test_a_school_bin_is_reached_inside_its_window() -> None:
    school = Window.parse("15:00-17:00")
    fleet = _fleet(["bin-001", "bin-005"], {"bin-005": school})
    run = fleet.plan(_request(["bin-001", "bin-005"]), _ms(2026, 6, 1, 8))
    assert run.fits and not any(s.blocked for s in run.stops)
    arrive = _local(run.stops[1].arrive_ms)
    assert arrive.hour == 15 or (arrive.hour == 16 and arrive.minute < 60)
    assert _inside_a_block(run.start_ms, run.return_ms)


def test_a_window_outside_every_shift_is_never_served_and_the_run_says_so() -> None:
    evening = Window.parse("19:00-20:00")
    fleet = _fleet(["bin-001"], {"bin-001": evening})
    run = fleet.plan(_request(["bin-001"]), _ms(2026, 6, 1, 8))
    assert not run.fits
    assert run.stops[0].blocked
    assert fleet.serve(run, 0, run.stops[0].arrive_ms) == 0.0
    assert run.skipped == ["bin-001"]


def test_a_window_waits_until_it_opens_and_refuses_once_it_closed() -> None:
    market = Window.parse("08:00-10:00")
    assert window_wait_ms(market, _ms(2026, 6, 1, 7, 30), SEOUL) == 30 * 60_000
    assert window_wait_ms(market, _ms(2026, 6, 1, 9, 0), SEOUL) == 0
    assert window_wait_ms(market, _ms(2026, 6, 1, 10, 0), SEOUL) is None


def test_the_longest_trip_holds_a_run_back_to_a_block_it_fits() -> None:
    short = Shifts.parse({"blocks": ["08:00-12:00"], "max_trip_h": 0.05}, SEOUL)  # 3 min
    fleet = _fleet(["bin-001"])
    fleet.shifts = short
    run = fleet.plan(_request(["bin-001"]), _ms(2026, 6, 1, 8))
    assert not run.fits  # no block can hold a trip that long: reported, not hidden
    assert run.return_ms - run.start_ms > 3 * 60_000


def test_drop_offs_do_not_depend_on_when_the_bin_is_read() -> None:
    reg = registry()
    device = reg.device("bin-001")
    assert device is not None
    site = reg.site(device.site)
    assert site is not None
    start = _ms(2026, 6, 1, 0)
    often, seldom = (EwasteBin(ModelContext(device, site, 7, start)) for _ in range(2))
    end = start + int(timedelta(days=3).total_seconds() * 1000)
    for t in range(start, end + 1, 7 * 60_000):
        often.reading(t)
    seldom.reading(end)
    assert often.weight_kg + often.overflow_kg == seldom.weight_kg + seldom.overflow_kg
