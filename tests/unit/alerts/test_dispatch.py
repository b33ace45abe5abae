"""Dispatch planning and the desk: batching by zone, capacity split, route order, no double
dispatch, collection by weight drop or status, and timeouts that re-open bins."""

from __future__ import annotations

from common.devices import haversine_km
from common.messages import DispatchStatus
from common.timestamps import ms_to_iso
from services.alerts.dispatch.desk import DispatchDesk
from services.alerts.dispatch.planner import (
    Candidate,
    TruckSlot,
    nearest_neighbour,
    plan_zone,
    route,
    tour_km,
    two_opt,
)
from tests.unit.alerts.helpers import HOUR, MIN, T0, bin_reading, registry

DEPOT = (37.0, 127.0)


def cand(name: str, lat: float, lon: float, kg: float = 10, mandatory: bool = True) -> Candidate:
    return Candidate(name, "ewaste", lat, lon, 90.0, kg, mandatory)


def test_two_opt_untangles_a_crossing_route() -> None:
    # A square visited corner-to-opposite-corner crosses itself; 2-opt must uncross it.
    square = [(37.01, 127.0), (37.02, 127.01), (37.01, 127.01), (37.02, 127.0)]
    crossing = [0, 1, 2, 3]
    better = two_opt(DEPOT, square, crossing)
    assert tour_km(DEPOT, [square[i] for i in better]) < tour_km(DEPOT, square) - 0.5
    assert better in ([0, 3, 1, 2], [2, 1, 3, 0])


def test_route_starts_with_the_stop_nearest_the_depot() -> None:
    stops = [cand("far", 37.05, 127.0), cand("near", 37.01, 127.0), cand("mid", 37.03, 127.0)]
    ordered, km = route(DEPOT, stops)
    assert [c.device_id for c in ordered] in (["near", "mid", "far"], ["far", "mid", "near"])
    assert abs(km - 2 * haversine_km(*DEPOT, 37.05, 127.0)) < 1e-6
    assert nearest_neighbour(DEPOT, [(c.latitude, c.longitude) for c in stops])[0] == 1


def test_capacity_splits_mandatory_bins_and_riders_fill_leftover_room() -> None:
    bins = [cand(f"m{i}", 37.01 + i / 1000, 127.0, kg=400) for i in range(5)]
    riders = [cand("r1", 37.0, 127.01, kg=150, mandatory=False)]
    riders.append(cand("r2", 37.0, 127.02, kg=900, mandatory=False))
    plans = plan_zone(DEPOT, bins + riders, [TruckSlot("big", 1500), TruckSlot("small", 1000)])
    assert [p.truck_id for p in plans] == ["big", "small"]
    assert all(p.est_load_kg <= cap for p, cap in zip(plans, (1500, 1000), strict=True))
    placed = {c.device_id for p in plans for c in p.stops}
    assert {f"m{i}" for i in range(5)} <= placed  # every mandatory bin is collected
    assert "r1" in placed and "r2" not in placed  # the heavy rider waits for another run


def test_no_plan_without_a_bin_that_asked() -> None:
    assert plan_zone(DEPOT, [cand("r", 37.0, 127.0, mandatory=False)], [TruckSlot("t", 1)]) == []


def _desk() -> DispatchDesk:
    return DispatchDesk(registry(), opportunistic_pct=70, timeout_ms=6 * HOUR)


def test_desk_batches_same_zone_bins_above_the_opportunistic_level() -> None:
    desk = _desk()
    desk.observe(bin_reading("bin-001", T0, 95))  # cheolsan, asked
    desk.observe(bin_reading("bin-002", T0, 75))  # cheolsan, rides along
    desk.observe(bin_reading("bin-003", T0, 40))  # cheolsan, too empty
    desk.observe(bin_reading("bin-025", T0, 85))  # haan: another zone
    desk.want("bin-001")
    out = desk.plan(T0)
    assert len(out.requests) == 1
    request = out.requests[0]
    assert request.zone == "cheolsan"
    assert {s.device_id for s in request.stops} == {"bin-001", "bin-002"}
    assert request.est_load_kg == (95 * 3 + 75 * 3)
    assert request.route_km > 0
    assert out.points[0][0] == "dispatch" and out.points[0][2]["state"] == "planned"


def test_desk_never_dispatches_a_bin_twice_while_open() -> None:
    desk = _desk()
    desk.observe(bin_reading("bin-001", T0, 95))
    desk.want("bin-001")
    assert len(desk.plan(T0).requests) == 1
    desk.want("bin-001")  # a repeat of the alert, or a second rule (forecast) firing
    assert desk.plan(T0 + MIN).requests == []
    assert desk.tick(T0 + HOUR).requests == []


def test_weight_drop_completes_the_dispatch_and_reports_collected_kg() -> None:
    desk = _desk()
    desk.observe(bin_reading("bin-001", T0, 95))
    desk.observe(bin_reading("bin-002", T0, 80))
    desk.want("bin-001")
    request = desk.plan(T0).requests[0]
    first = desk.observe(bin_reading("bin-001", T0 + HOUR, 2))
    assert first.collected_bins == [("bin-001", request.dispatch_id)] and not first.closed
    done = desk.observe(bin_reading("bin-002", T0 + HOUR + MIN, 1))
    assert done.closed == [request.dispatch_id]
    fields = done.points[-1][2]
    assert fields["state"] == "completed"
    assert fields["collected_kg"] == ((95 - 2) * 3 + (80 - 1) * 3)
    assert desk.open == {}


def test_completed_status_closes_with_the_trucks_collected_kg() -> None:
    desk = _desk()
    desk.observe(bin_reading("bin-001", T0, 95))
    desk.want("bin-001")
    request = desk.plan(T0).requests[0]
    en_route = desk.on_status(DispatchStatus(dispatch_id=request.dispatch_id, state="en_route"), T0)
    assert en_route.points[0][2]["state"] == "en_route"
    done = desk.on_status(
        DispatchStatus(dispatch_id=request.dispatch_id, state="completed", collected_kg=280.5),
        T0 + HOUR,
    )
    assert done.collected_bins == [("bin-001", request.dispatch_id)]
    assert done.points[0][2]["collected_kg"] == 280.5
    assert desk.wanted == set()


def test_timeout_reopens_the_bins_and_dispatches_again() -> None:
    desk = _desk()
    desk.observe(bin_reading("bin-001", T0, 95))
    desk.want("bin-001")
    first = desk.plan(T0).requests[0]
    assert desk.tick(T0 + 5 * HOUR).requests == []
    out = desk.tick(T0 + 6 * HOUR)
    assert first.dispatch_id in out.closed
    assert [s.state for s in out.statuses] == ["cancelled"]
    assert len(out.requests) == 1 and out.requests[0].dispatch_id != first.dispatch_id
    assert out.requests[0].stops[0].device_id == "bin-001"


def test_readings_overtaken_by_the_completed_status_are_not_the_bins_level() -> None:
    # The truck's status travels on its own connection and arrives before the bin's last
    # pre-collection readings; they must not make the emptied bin a rider or a candidate.
    desk = _desk()
    desk.observe(bin_reading("bin-001", T0, 95))
    desk.want("bin-001")
    request = desk.plan(T0).requests[0]
    done_at = T0 + HOUR
    status = DispatchStatus(
        dispatch_id=request.dispatch_id, state="completed", ts=ms_to_iso(done_at)
    )
    assert desk.on_status(status, T0 + 50 * MIN).collected_bins == [
        ("bin-001", request.dispatch_id)
    ]
    assert desk.collected.at("bin-001") == done_at
    assert desk.observe(bin_reading("bin-001", done_at - 20 * MIN, 97)).collected_bins == []
    assert "bin-001" not in desk.bins  # the stale 97 % was not taken as its level
    desk.want("bin-002")
    desk.observe(bin_reading("bin-002", done_at, 95))
    replan = desk.plan(done_at).requests
    assert [s.device_id for s in replan[0].stops] == ["bin-002"]  # bin-001 does not ride
    desk.observe(bin_reading("bin-001", done_at + 5 * MIN, 1))
    assert desk.bins["bin-001"].fill_pct == 1  # readings after the collection count again


def test_an_emptying_without_a_dispatch_is_one_collection_point_at_the_readings_time() -> None:
    desk = _desk()
    assert desk.observe(bin_reading("bin-001", T0, 95)).points == []
    assert desk.observe(bin_reading("bin-001", T0 + MIN, 96)).points == []  # filling
    emptied = desk.observe(bin_reading("bin-001", T0 + HOUR, 2)).points
    tags = registry().tags_for("ewaste", "bin-001")
    assert emptied == [
        (
            "collection",
            {
                "site": "ewaste",
                "device_id": "bin-001",
                "zone": tags["zone"],
                "residential_type": tags["residential_type"],
            },
            {"kg": (96 - 2) * 3, "weight_estimated": False},
            T0 + HOUR,
        )
    ]


def test_replaying_an_emptying_rewrites_the_same_collection_point() -> None:
    readings = [bin_reading("bin-001", T0 + n * MIN, fill) for n, fill in enumerate((90, 95, 3))]
    once = _desk()
    first = [p for r in readings for p in once.observe(r).points]
    desk = _desk()
    again = [p for _ in range(2) for r in readings for p in desk.observe(r).points]
    assert len(first) == 1 and again == first * 2  # same series and time: InfluxDB keeps one
