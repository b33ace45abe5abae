"""Collection trucks as plain objects: a dispatch request becomes a timed itinerary (depot ->
stops in order -> depot) whose stops empty bins within the truck's capacity.

No MQTT here: the engine feeds requests in and turns the returned statuses into messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from common.devices import Registry, Truck, haversine_km
from common.messages import DispatchRequest, DispatchState, DispatchStatus
from common.timestamps import ms_to_iso

DEFAULT_TRUCK = Truck(id="truck-sim", capacity_kg=1000.0, speed_kmh=25.0, stop_service_s=240)


class Collectable(Protocol):
    """What a truck needs from a bin."""

    def collect(self, now_ms: int, max_kg: float | None = None) -> float: ...


@dataclass(slots=True)
class Stop:
    device_id: str
    arrive_ms: int
    done_ms: int


@dataclass(slots=True)
class TruckRun:
    """One dispatch being driven. ``stops`` are timed; ``return_ms`` is back at the depot."""

    request: DispatchRequest
    truck: Truck
    start_ms: int
    stops: list[Stop]
    return_ms: int
    route_km: float
    collected_kg: float = 0.0
    stops_done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def room_kg(self) -> float:
        return max(0.0, self.truck.capacity_kg - self.collected_kg)

    def status(self, state: DispatchState, now_ms: int, message: str = "") -> DispatchStatus:
        return DispatchStatus(
            dispatch_id=self.request.dispatch_id,
            state=state,
            truck_id=self.truck.id,
            zone=self.request.zone,
            ts=ms_to_iso(now_ms),
            collected_kg=round(self.collected_kg, 2) if state == "completed" else None,
            stops_done=list(self.stops_done),
            message=message,
        )


class Fleet:
    """The city's trucks; each drives one run at a time and queues later requests."""

    def __init__(self, registry: Registry, bins: Mapping[str, Collectable]) -> None:
        self.registry = registry
        self.bins = bins
        self.depot = (registry.depot.latitude, registry.depot.longitude)
        self.free_at_ms: dict[str, int] = {}
        self.completed = 0
        self.bins_collected = 0
        self.collected_kg = 0.0

    def plan(self, request: DispatchRequest, now_ms: int) -> TruckRun:
        """Time the itinerary: start when the truck is free, drive at its speed, serve stops."""
        truck = self.registry.truck(request.truck_id) or DEFAULT_TRUCK.model_copy(
            update={"id": request.truck_id}
        )
        depot = self.depot
        if request.depot_latitude is not None and request.depot_longitude is not None:
            depot = (request.depot_latitude, request.depot_longitude)
        start = max(now_ms, self.free_at_ms.get(truck.id, now_ms))
        t, here, km = start, depot, 0.0
        stops: list[Stop] = []
        for stop in request.stops:
            bin_device = self.registry.device(stop.device_id)
            there = (
                (bin_device.latitude, bin_device.longitude)
                if bin_device is not None
                and bin_device.latitude is not None
                and bin_device.longitude is not None
                else (stop.latitude, stop.longitude)
            )
            leg = haversine_km(*here, *there)
            km += leg
            t += _drive_ms(leg, truck.speed_kmh)
            stops.append(Stop(stop.device_id, t, t + truck.stop_service_s * 1000))
            t += truck.stop_service_s * 1000
            here = there
        back = haversine_km(*here, *depot)
        km += back
        t += _drive_ms(back, truck.speed_kmh)
        self.free_at_ms[truck.id] = t
        return TruckRun(request, truck, start, stops, t, km)

    def serve(self, run: TruckRun, index: int, now_ms: int) -> float:
        """The truck is at stop ``index``: empty the bin as far as its capacity allows."""
        stop = run.stops[index]
        bin_model = self.bins.get(stop.device_id)
        if bin_model is None or run.room_kg <= 0:
            run.skipped.append(stop.device_id)
            return 0.0
        taken = bin_model.collect(now_ms, run.room_kg)
        run.collected_kg += taken
        run.stops_done.append(stop.device_id)
        self.bins_collected += 1
        self.collected_kg += taken
        return taken

    def finish(self, run: TruckRun, now_ms: int) -> DispatchStatus:
        self.completed += 1
        note = f"{len(run.stops_done)} stops, {run.route_km:.1f} km"
        if run.skipped:
            note += f"; skipped (unknown bin or truck full): {', '.join(run.skipped)}"
        return run.status("completed", now_ms, note)


def _drive_ms(km: float, speed_kmh: float) -> int:
    return round(km / speed_kmh * 3_600_000)
