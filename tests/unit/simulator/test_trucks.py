"""Collection trucks as plain objects: timing, order, capacity."""

from __future__ import annotations

from datetime import UTC, datetime

from common.devices import haversine_km
from common.messages import DispatchRequest, DispatchStatus, DispatchStop
from devices.simulator.models import EwasteBin, ModelContext
from devices.simulator.trucks import Fleet, TruckRun
from tests.unit.simulator.support import registry

T0 = int(datetime(2025, 6, 14, 1, 0, tzinfo=UTC).timestamp() * 1000)


def _bins(ids: list[str], fill: float) -> dict[str, EwasteBin]:
    reg = registry()
    out = {}
    for device_id in ids:
        device = reg.device(device_id)
        assert device is not None
        site = reg.site(device.site)
        assert site is not None
        out[device_id] = EwasteBin(ModelContext(device, site, 1, T0, initial={"fill_pct": fill}))
    return out


def _request(ids: list[str], truck: str = "truck-1", dispatch_id: str = "d-1") -> DispatchRequest:
    reg = registry()
    stops = []
    for device_id in ids:
        device = reg.device(device_id)
        assert device is not None and device.latitude is not None and device.longitude is not None
        stops.append(
            DispatchStop(device_id=device_id, latitude=device.latitude, longitude=device.longitude)
        )
    return DispatchRequest(
        dispatch_id=dispatch_id, truck_id=truck, zone="cheolsan", stops=stops,
        est_load_kg=0.0, route_km=0.0,
    )  # fmt: skip


def _drive(
    fleet_bins: dict[str, EwasteBin], request: DispatchRequest, now: int = T0
) -> tuple[Fleet, TruckRun, DispatchStatus]:
    fleet = Fleet(registry(), fleet_bins)
    run = fleet.plan(request, now)
    for i, stop in enumerate(run.stops):
        fleet.serve(run, i, stop.arrive_ms)
    return fleet, run, fleet.finish(run, run.return_ms)


def test_truck_drives_stops_in_order_at_its_speed_and_empties_the_bins() -> None:
    ids = ["bin-001", "bin-002", "bin-003"]
    bins = _bins(ids, 50.0)
    before = {i: b.weight_kg for i, b in bins.items()}
    fleet, run, status = _drive(bins, _request(ids))
    reg = registry()
    depot = (reg.depot.latitude, reg.depot.longitude)
    first = reg.device("bin-001")
    assert first is not None and first.latitude is not None and first.longitude is not None
    km = haversine_km(*depot, first.latitude, first.longitude)
    assert abs(run.stops[0].arrive_ms - T0 - km / 25 * 3_600_000) < 1000  # truck-1: 25 km/h
    assert [s.device_id for s in run.stops] == ids
    assert all(a.arrive_ms < b.arrive_ms for a, b in zip(run.stops, run.stops[1:], strict=False))
    assert run.return_ms > run.stops[-1].done_ms
    assert all(b.weight_kg < 0.5 for b in bins.values())
    assert status.state == "completed" and status.stops_done == ids
    assert status.collected_kg is not None
    assert abs(status.collected_kg - sum(before.values())) < 2.0
    assert fleet.bins_collected == 3


def test_truck_respects_its_capacity() -> None:
    ids = ["bin-001", "bin-003", "bin-005", "bin-006", "bin-008", "bin-014", "bin-016"]
    bins = _bins(ids, 95.0)  # 7 large bins, ~250 kg each, for a 1 t pickup
    _, run, status = _drive(bins, _request(ids, truck="truck-3"))
    assert status.collected_kg is not None
    assert status.collected_kg <= 1000.0 + 1e-6
    assert status.collected_kg > 990.0
    assert run.skipped, "the bins after a full load stay"
    assert any(b.weight_kg > 100 for b in bins.values())


def test_busy_truck_starts_its_next_run_when_back_at_the_depot() -> None:
    bins = _bins(["bin-001", "bin-002"], 40.0)
    fleet = Fleet(registry(), bins)
    first = fleet.plan(_request(["bin-001"], dispatch_id="a"), T0)
    second = fleet.plan(_request(["bin-002"], dispatch_id="b"), T0 + 1000)
    assert second.start_ms == first.return_ms
