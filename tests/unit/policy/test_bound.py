"""The hindsight bound on instances small enough to check by hand: the solver's answer is the
known optimum, and the bound it proves never exceeds it."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

from common.devices import haversine_km
from devices.simulator.shifts import Block, Shifts, Window
from scripts.policy import bound
from scripts.policy.cities import load_city, monthly_kg
from scripts.policy.routes import compare, ortools_order
from services.alerts.dispatch.planner import tour_km

BIG = [bound.TruckSpec("t1", 1000.0, max_stops=20, max_trips=3)]


def _bin(
    name: str,
    cum: list[float],
    end: float,
    full: float = 100.0,
    initial: float = 0.0,
    slots: list[int] | None = None,
) -> bound.BinTrace:
    slots = slots if slots is not None else list(range(len(cum)))
    return bound.BinTrace(name, "z", full, initial, tuple(slots), tuple(cum), end, 1.0)


def test_one_bin_that_overflows_once_needs_exactly_one_trip() -> None:
    res = bound.solve([_bin("a", [30, 60, 90], 150)], BIG, 3, time_limit_s=10)
    assert (res.trips_lb, res.trips_best, res.optimal) == (1, 1, True)
    assert sum(len(v) for v in res.schedule.values()) == 1


def test_a_bin_that_never_fills_needs_no_trip() -> None:
    res = bound.solve([_bin("a", [10, 20], 40)], BIG, 2, time_limit_s=10)
    assert (res.trips_lb, res.trips_best, res.simple_lb) == (0, 0, 0)


def test_a_fast_bin_is_emptied_in_every_block() -> None:
    # 50 kg a block into 80 kg: every leg longer than one block overflows.
    res = bound.solve([_bin("a", [50, 100, 150], 200, full=80)], BIG, 3, time_limit_s=10)
    assert (res.trips_lb, res.trips_best) == (3, 3)
    assert sorted(res.schedule) == [0, 1, 2]
    assert bound.min_collections(_bin("a", [50, 100, 150], 200, full=80)) == 3
    assert res.simple_lb == 3  # the busiest bin's emptyings: one trip each at least


def test_two_bins_ride_together_when_a_block_reaches_both() -> None:
    bins = [_bin("a", [40, 80], 120), _bin("b", [30, 70], 110)]
    res = bound.solve(bins, BIG, 2, time_limit_s=10)
    assert (res.trips_lb, res.trips_best) == (1, 1)


def test_windows_that_never_meet_cost_a_trip_each() -> None:
    bins = [_bin("a", [40], 120, slots=[0]), _bin("b", [70], 110, slots=[1])]
    res = bound.solve(bins, BIG, 2, time_limit_s=10)
    assert (res.trips_lb, res.trips_best) == (2, 2)


def test_capacity_splits_a_block_into_two_trips() -> None:
    small = [bound.TruckSpec("t1", 100.0, max_stops=20, max_trips=3)]
    bins = [_bin("a", [60], 120), _bin("b", [70], 110)]
    res = bound.solve(bins, small, 1, time_limit_s=10)
    assert (res.trips_lb, res.trips_best) == (2, 2)
    assert res.simple_lb == 2  # 130 kg must go, 100 kg a trip
    trips = bound.pack_block({"a": 60.0, "b": 70.0}, small)
    assert sorted(len(members) for _, members in trips) == [1, 1]


def test_a_bin_full_before_any_truck_can_come_is_reported_not_hidden() -> None:
    bins = [_bin("a", [20, 40], 60, initial=90.0), _bin("b", [40, 80], 120)]
    res = bound.solve(bins, BIG, 2, time_limit_s=10)
    assert res.unavoidable == ["a"]
    assert res.trips_best == 1


def test_greedy_and_solver_agree_with_brute_force_on_a_small_city() -> None:
    # Three bins, four blocks, a 150 kg truck: enumerate every schedule.
    bins = [
        _bin("a", [30, 60, 90, 120], 150),
        _bin("b", [50, 100, 150, 200], 250, full=120),
        _bin("c", [10, 20, 70, 80], 90, full=60),
    ]
    truck = [bound.TruckSpec("t1", 150.0, max_stops=20, max_trips=2)]
    res = bound.solve(bins, truck, 4, time_limit_s=20)
    assert res.optimal
    assert res.trips_lb == res.trips_best == _brute_force(bins, 150.0, 4)


def _brute_force(bins: list[bound.BinTrace], capacity: float, blocks: int) -> int:
    best = 10**9
    choices = [list(itertools.product([0, 1], repeat=len(b.slots))) for b in bins]
    for combo in itertools.product(*choices):
        loads = [0.0] * blocks
        ok = True
        for b, picks in zip(bins, combo, strict=True):
            path = [-1, *(i for i, p in enumerate(picks) if p), len(b.slots)]
            for p, s in itertools.pairwise(path):
                kg = bound._gathered(b, p, s, False)
                if kg >= b.full_kg:
                    ok = False
                if s < len(b.slots):
                    loads[b.slots[s]] += int(kg)
        if ok:
            # The bound's blocks let loads split across a block's trips (its relaxation).
            best = min(best, sum(-(-int(load) // int(capacity)) for load in loads))
    return best


def test_collection_times_keep_to_the_window_inside_the_block() -> None:
    tz = ZoneInfo("Asia/Seoul")
    shifts = Shifts.parse({}, tz)
    day = datetime(2026, 6, 1, tzinfo=tz)
    morning = Block(
        int(day.replace(hour=8).timestamp() * 1000), int(day.replace(hour=12).timestamp() * 1000)
    )
    assert bound.collection_times(morning, Window.parse("15:00-17:00"), shifts) is None
    first, last = bound.collection_times(morning, Window.parse("08:00-10:00"), shifts) or (0, 0)
    assert datetime.fromtimestamp(first / 1000, tz).hour == 8
    assert datetime.fromtimestamp(last / 1000, tz).hour == 9


def test_ortools_finds_the_brute_force_shortest_tour() -> None:
    depot = (37.42683, 126.86402)
    points = [(37.476, 126.869), (37.447, 126.885), (37.479, 126.856), (37.463, 126.880)]
    order = ortools_order(depot, points, time_limit_s=0.2)
    assert order is not None and sorted(order) == [0, 1, 2, 3]
    best = min(tour_km(depot, list(p)) for p in itertools.permutations(points))
    assert abs(tour_km(depot, [points[i] for i in order]) - best) < 1e-6
    c = compare(depot, points, time_limit_s=0.2)
    assert c.ortools_km <= c.ours_km + 1e-9
    assert haversine_km(*depot, *points[0]) < c.ours_km


def test_the_calibrated_city_receives_541_tonnes_a_year() -> None:
    city = load_city("gwangmyeong541")
    assert abs(monthly_kg(city, 365) - 541_000) < 0.01 * 541_000
    assert len(city.registry.zones()) == 6 and city.shifts is not None
    skewed = load_city("skewed")
    factors = sorted(skewed.fill_factor.values())
    assert factors[-1] > 10 * factors[0]  # two days against six weeks


def test_the_bound_schedule_driven_through_the_trucks_never_overflows() -> None:
    # Four days of the skewed city: its two-day bins must be emptied more than once.
    from scripts.policy_eval import run_bound

    monday = int(datetime(2026, 6, 1, tzinfo=ZoneInfo("Asia/Seoul")).timestamp() * 1000)
    out = run_bound(load_city("skewed"), 4, 3, time_limit_s=6, start_ms=monday)
    assert out["unavoidable"] == 0
    assert out["trips"] >= out["trips_lb"] >= out["simple_lb"] >= 1
    assert out["overflow_hours"] == 0.0
    assert out["unfit_runs"] == 0 and out["window_missed"] == 0
