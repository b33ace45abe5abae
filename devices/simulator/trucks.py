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
from devices.simulator.shifts import Shifts, Window, window_wait_ms

# A run that cannot start now is tried again this much later (windows, shift ends).
RETRY_STEP_MS = 15 * 60_000
LOOKAHEAD_MS = 14 * 24 * 3_600_000
DEFAULT_TRUCK = Truck(id="truck-sim", capacity_kg=1000.0, speed_kmh=25.0, stop_service_s=240)


class Collectable(Protocol):
    """What a truck needs from a bin."""

    def collect(self, now_ms: int, max_kg: float | None = None) -> float: ...


@dataclass(slots=True)
class Stop:
    device_id: str
    arrive_ms: int
    done_ms: int
    blocked: bool = False  # its access window had closed when the truck got there


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
    fits: bool = True  # inside a shift block and the longest trip, every window met
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
    """The city's trucks; each drives one run at a time and queues later requests. With
    ``shifts``, a run waits for the first start that keeps it inside one working block."""

    def __init__(
        self,
        registry: Registry,
        bins: Mapping[str, Collectable],
        shifts: Shifts | None = None,
        windows: Mapping[str, Window] | None = None,
    ) -> None:
        self.registry = registry
        self.bins = bins
        self.shifts = shifts
        self.windows = dict(windows or {})
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
        earliest = max(now_ms, self.free_at_ms.get(truck.id, now_ms))
        if self.shifts is None:
            run = self._timed(request, truck, depot, earliest)
        else:
            run = self._in_shift(request, truck, depot, earliest, self.shifts)
        self.free_at_ms[truck.id] = run.return_ms
        return run

    def _in_shift(
        self,
        request: DispatchRequest,
        truck: Truck,
        depot: tuple[float, float],
        earliest: int,
        shifts: Shifts,
    ) -> TruckRun:
        """The earliest start whose whole run fits one block and the longest trip, with every
        access window met; else the first block's start (the run is marked as not fitting)."""
        first: TruckRun | None = None
        for block in shifts.blocks_between(earliest, earliest + LOOKAHEAD_MS):
            start = max(block.start_ms, earliest)
            if first is None:
                first = self._timed(request, truck, depot, start, block.end_ms)
            run = self._retry(request, truck, depot, start, block.end_ms, block.end_ms)
            if run is not None and run.return_ms - run.start_ms <= shifts.max_trip_s * 1000:
                return run
        if first is None:
            first = self._timed(request, truck, depot, earliest)
        first.fits = False
        return first

    def _retry(
        self,
        request: DispatchRequest,
        truck: Truck,
        depot: tuple[float, float],
        start: int,
        until_ms: int,
        back_by_ms: int | None = None,
    ) -> TruckRun | None:
        while start < until_ms:
            run = self._timed(request, truck, depot, start)
            if back_by_ms is not None and run.return_ms > back_by_ms:
                return None  # starting later only ends later
            if not any(stop.blocked for stop in run.stops):
                return run
            start += RETRY_STEP_MS
        return None

    def _timed(
        self,
        request: DispatchRequest,
        truck: Truck,
        depot: tuple[float, float],
        start: int,
        wait_until_ms: int | None = None,
    ) -> TruckRun:
        """Drive at the truck's speed, wait at a bin whose window is not open yet (windows are
        local times: they apply with shifts, which carry the time zone). A window that opens
        only after ``wait_until_ms`` (the shift's end) is not waited for: the stop is blocked."""
        tz = self.shifts.tz if self.shifts is not None else None
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
            window = self.windows.get(stop.device_id)
            wait = 0 if window is None or tz is None else window_wait_ms(window, t, tz)
            if wait is not None and wait_until_ms is not None and t + wait > wait_until_ms:
                wait = None
            if wait is None:
                stops.append(Stop(stop.device_id, t, t, blocked=True))
            else:
                t += wait
                stops.append(Stop(stop.device_id, t, t + truck.stop_service_s * 1000))
                t += truck.stop_service_s * 1000
            here = there
        back = haversine_km(*here, *depot)
        km += back
        t += _drive_ms(back, truck.speed_kmh)
        run = TruckRun(request, truck, start, stops, t, km)
        run.fits = not any(s.blocked for s in stops)
        return run

    def serve(self, run: TruckRun, index: int, now_ms: int) -> float:
        """The truck is at stop ``index``: empty the bin as far as its capacity allows."""
        stop = run.stops[index]
        bin_model = self.bins.get(stop.device_id)
        if bin_model is None or run.room_kg <= 0 or stop.blocked:
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
            note += f"; skipped (unknown bin, truck full or window shut): {', '.join(run.skipped)}"
        return run.status("completed", now_ms, note)


def _drive_ms(km: float, speed_kmh: float) -> int:
    return round(km / speed_kmh * 3_600_000)
