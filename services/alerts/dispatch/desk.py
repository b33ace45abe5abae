"""The dispatch desk: turns firing bin alerts into dispatch requests, follows them to
collection (truck status or the bins' weight drop) or timeout. Plain object, event time."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

from common.devices import Registry
from common.kinds import EwasteBinParams
from common.messages import DispatchRequest, DispatchStatus, DispatchStop
from common.payloads import Reading
from common.schema import DISPATCH_MEASUREMENT, Point, collection_point, route_points
from common.timestamps import iso_to_ms, ms_to_iso
from services.alerts.collected import CollectedBins
from services.alerts.dispatch.planner import Candidate, TruckSlot, plan_zone

MIN_DROP_KG = 5.0
DROP_SHARE = 0.3  # a bin that lost 30 % of its weight in one reading was emptied
# A bin that reports fill only (a lid distance sensor) was emptied when its fill fell this far.
MIN_DROP_PCT = 20.0
DEFAULT_BULK_DENSITY_KG_L = 0.2
"""kg per litre of loose small e-waste, for a bin without weight or its own
``bulk_density_kg_l``: its load is estimated from fill x volume x density."""
# A truck's clock may be wrong: its ``completed`` time never silences a bin's readings for
# longer than this past the stream's own time.
MAX_STATUS_LEAD_MS = 3_600_000


class DispatchPhase(StrEnum):
    """Where a dispatch is, as written in the ``dispatch`` measurement's ``state`` field: the
    published ``DispatchState``s plus ``timed_out`` (closed by the desk, published as
    ``cancelled``)."""

    PLANNED = "planned"
    EN_ROUTE = "en_route"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


@dataclass(slots=True)
class OpenDispatch:
    request: DispatchRequest
    created_ms: int
    phase: DispatchPhase = DispatchPhase.PLANNED
    collected: dict[str, float] = field(default_factory=dict)  # device -> kg seen dropping

    @property
    def bins(self) -> set[str]:
        return {stop.device_id for stop in self.request.stops}


class Collection(NamedTuple):
    """A bin of an open dispatch was emptied (its time is in ``CollectedBins``)."""

    device_id: str
    dispatch_id: str


@dataclass(slots=True)
class DeskOutput:
    """What the service must do after a step of the desk."""

    requests: list[DispatchRequest] = field(default_factory=list)
    statuses: list[DispatchStatus] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    collected_bins: list[Collection] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def extend(self, other: DeskOutput) -> None:
        self.requests += other.requests
        self.statuses += other.statuses
        self.points += other.points
        self.collected_bins += other.collected_bins
        self.closed += other.closed


@dataclass(slots=True)
class _Bin:
    fill_pct: float | None = None
    weight_kg: float | None = None
    weighed: bool = False  # it has sent a weight (else its kg are estimated from fill)


class DispatchDesk:
    def __init__(
        self,
        registry: Registry,
        opportunistic_pct: float = 40.0,
        timeout_ms: int = 8 * 3_600_000,
        collected: CollectedBins | None = None,
        bulk_density_kg_l: float = DEFAULT_BULK_DENSITY_KG_L,
    ) -> None:
        self.registry = registry
        self.bulk_density_kg_l = bulk_density_kg_l
        self.opportunistic_pct = opportunistic_pct
        self.timeout_ms = timeout_ms
        self.depot = (registry.depot.latitude, registry.depot.longitude)
        self.bins: dict[str, _Bin] = {}
        self.wanted: set[str] = set()  # bins whose own alert asks for a collection
        self.open: dict[str, OpenDispatch] = {}
        self.collected = collected if collected is not None else CollectedBins()
        self._estimated: set[str] = set()  # bins whose last planned kg came from their fill

    # -- inputs --------------------------------------------------------------------------
    def busy_bins(self) -> set[str]:
        return {b for d in self.open.values() for b in d.bins}

    def waiting(self) -> bool:
        """True if a bin asks for a collection and is on no open dispatch yet."""
        return bool(self.wanted - self.busy_bins())

    def want(self, device_id: str) -> None:
        if self.registry.device(device_id) is not None:
            self.wanted.add(device_id)

    def unwant(self, device_id: str) -> None:
        self.wanted.discard(device_id)

    def observe(self, reading: Reading) -> DeskOutput:
        """Remember the bin's level; a big weight (or fill) drop is an emptying: a
        ``collection`` point, and on an open dispatch that bin's collection."""
        out = DeskOutput()
        if reading.kind != "ewaste_bin":
            return out
        if self.collected.supersedes(reading.device_id, reading.ts_ms):
            return out  # taken before the collection we already know about
        state = self.bins.setdefault(reading.device_id, _Bin())
        weight = reading.fields.get("weight_kg")
        fill = reading.fields.get("fill_pct")
        before = state.weight_kg
        fill_before = state.fill_pct
        state.weight_kg = float(weight) if weight is not None else state.weight_kg
        state.weighed = state.weighed or weight is not None
        state.fill_pct = float(fill) if fill is not None else state.fill_pct
        if state.weighed:
            if before is None or state.weight_kg is None:
                return out
            drop = before - state.weight_kg
            if drop < max(MIN_DROP_KG, DROP_SHARE * before):
                return out
        else:
            # No scale in this bin: a big fall of its fill is the emptying; kg estimated.
            if fill_before is None or state.fill_pct is None:
                return out
            fall = fill_before - state.fill_pct
            if fall < max(MIN_DROP_PCT, DROP_SHARE * fill_before):
                return out
            drop = self._estimated_kg(reading.device_id, fall)
        dispatch_id: str | None = None
        closing = DeskOutput()
        for dispatch in list(self.open.values()):
            if reading.device_id in dispatch.bins and reading.device_id not in dispatch.collected:
                dispatch_id = dispatch.request.dispatch_id
                dispatch.collected[reading.device_id] = drop
                self.collected.record(reading.device_id, reading.ts_ms)
                out.collected_bins.append(
                    Collection(reading.device_id, dispatch.request.dispatch_id)
                )
                if dispatch.collected.keys() >= dispatch.bins:
                    closing.extend(
                        self._close(dispatch, DispatchPhase.COMPLETED, reading.ts_ms, None)
                    )
        # Every emptying, on a dispatch or not (a caretaker, a truck passing by), is a
        # ``collection`` point: the dashboards' kg come from these, not from raw weights.
        out.points.append(
            collection_point(
                reading.site,
                reading.device_id,
                self.registry.tags_for(reading.site, reading.device_id),
                drop,
                reading.ts_ms,
                weight_estimated=not state.weighed,
                dispatch_id=dispatch_id,
            )
        )
        out.extend(closing)
        return out

    def on_status(self, status: DispatchStatus, now_ms: int) -> DeskOutput:
        dispatch = self.open.get(status.dispatch_id)
        if dispatch is None or status.state == "planned":
            return DeskOutput()
        if status.state == "en_route":
            dispatch.phase = DispatchPhase.EN_ROUTE
            return DeskOutput(points=[self._point(dispatch, dispatch.phase, now_ms, None)])
        if status.state == "completed":
            out = DeskOutput()
            # The bins were emptied by the time the truck reported back (its ``ts``, event
            # time): an upper bound on every stop, and readings of a just-emptied bin are
            # low, so it is a safe cut-off for the readings still on their way.
            done_ms = min(iso_to_ms(status.ts, default=now_ms), now_ms + MAX_STATUS_LEAD_MS)
            for device_id in sorted(dispatch.bins - dispatch.collected.keys()):
                self.collected.record(device_id, done_ms)
                out.collected_bins.append(Collection(device_id, status.dispatch_id))
            out.extend(self._close(dispatch, DispatchPhase.COMPLETED, now_ms, status.collected_kg))
            return out
        return self._close(dispatch, DispatchPhase.CANCELLED, now_ms, status.collected_kg)

    def restore(self, request: DispatchRequest) -> None:
        """Take back an open dispatch after a restart (from its retained record)."""
        self.open[request.dispatch_id] = OpenDispatch(request, iso_to_ms(request.created_at))

    # -- time ----------------------------------------------------------------------------
    def tick(self, now_ms: int) -> DeskOutput:
        """Expire dispatches that never completed (their bins re-open), then plan."""
        out = DeskOutput()
        for dispatch in list(self.open.values()):
            if now_ms - dispatch.created_ms >= self.timeout_ms:
                out.extend(self._close(dispatch, DispatchPhase.TIMED_OUT, now_ms, None))
                out.statuses.append(
                    DispatchStatus(
                        dispatch_id=dispatch.request.dispatch_id,
                        state="cancelled",
                        truck_id=dispatch.request.truck_id,
                        zone=dispatch.request.zone,
                        ts=ms_to_iso(now_ms),
                        message="timed out: bins re-opened for the next dispatch",
                    )
                )
        out.extend(self.plan(now_ms))
        return out

    def plan(self, now_ms: int) -> DeskOutput:
        """Dispatch every zone that has a wanted bin not already on an open dispatch."""
        out = DeskOutput()
        busy = self.busy_bins()
        zones = sorted(
            {zone for device_id in self.wanted - busy if (zone := self.registry.zone_of(device_id))}
        )
        for zone in zones:
            out.extend(self._plan_zone(zone, busy, now_ms))
        return out

    def _plan_zone(self, zone: str, busy: set[str], now_ms: int) -> DeskOutput:
        candidates = []
        for device in self.registry.bins_in_zone(zone):
            if device.id in busy or device.latitude is None or device.longitude is None:
                continue
            state = self.bins.get(device.id, _Bin())
            mandatory = device.id in self.wanted
            if not mandatory and (
                state.fill_pct is None or state.fill_pct < self.opportunistic_pct
            ):
                continue
            weight = state.weight_kg
            estimated = weight is None
            if weight is None:
                weight = self._estimated_kg(device.id, state.fill_pct or 100.0)
            if estimated:
                self._estimated.add(device.id)
            else:
                self._estimated.discard(device.id)
            candidates.append(
                Candidate(
                    device.id,
                    device.site,
                    device.latitude,
                    device.longitude,
                    state.fill_pct,
                    weight,
                    mandatory,
                )
            )
        out_trucks = {d.request.truck_id for d in self.open.values()}
        fleet = sorted(self.registry.trucks, key=lambda t: (-t.capacity_kg, t.id))
        free = [t for t in fleet if t.id not in out_trucks] or fleet
        slots = [TruckSlot(t.id, t.capacity_kg) for t in free]
        out = DeskOutput()
        stamp = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%d%H%M%S")
        for plan in plan_zone(self.depot, candidates, slots):
            riders = sum(1 for s in plan.stops if not s.mandatory)
            request = DispatchRequest(
                dispatch_id=f"d{stamp}-{zone}-{secrets.token_hex(2)}",
                truck_id=plan.truck_id,
                zone=zone,
                stops=[
                    DispatchStop(
                        device_id=s.device_id,
                        site=s.site,
                        latitude=s.latitude,
                        longitude=s.longitude,
                        fill_pct=s.fill_pct,
                        est_weight_kg=round(s.weight_kg, 1),
                        weight_estimated=s.device_id in self._estimated,
                    )
                    for s in plan.stops
                ],
                est_load_kg=plan.est_load_kg,
                route_km=plan.route_km,
                reason=f"{len(plan.stops) - riders} bin(s) asked, {riders} above "
                f"{self.opportunistic_pct:g} % ride along",
                created_at=ms_to_iso(now_ms),
                depot_latitude=self.depot[0],
                depot_longitude=self.depot[1],
            )
            dispatch = OpenDispatch(request, now_ms)
            self.open[request.dispatch_id] = dispatch
            out.requests.append(request)
            out.points.append(self._point(dispatch, DispatchPhase.PLANNED, now_ms, None))
            out.points.extend(route_points(request, now_ms))  # the map's planned routes
        return out

    # -- helpers -------------------------------------------------------------------------
    def _estimated_kg(self, device_id: str, fill_pct: float) -> float:
        """The kg of a bin ``fill_pct`` full, for a bin without a weight: its volume x bulk
        density when the registry has a volume, else its capacity."""
        device = self.registry.device(device_id)
        if device is None or not isinstance(device.params, EwasteBinParams):
            return 0.0
        params = device.params
        if params.volume_l is not None:
            density = params.bulk_density_kg_l or self.bulk_density_kg_l
            return fill_pct / 100 * params.volume_l * density
        return fill_pct / 100 * params.capacity_kg

    def _close(
        self,
        dispatch: OpenDispatch,
        phase: DispatchPhase,
        now_ms: int,
        collected_kg: float | None,
    ) -> DeskOutput:
        self.open.pop(dispatch.request.dispatch_id, None)
        if phase is DispatchPhase.COMPLETED:
            for device_id in dispatch.bins:
                self.wanted.discard(device_id)
                self.bins.pop(device_id, None)  # its level is news only after the emptying
        if collected_kg is None:
            collected_kg = sum(dispatch.collected.values())
        return DeskOutput(
            points=[self._point(dispatch, phase, now_ms, collected_kg)],
            closed=[dispatch.request.dispatch_id],
        )

    def _point(
        self,
        dispatch: OpenDispatch,
        phase: DispatchPhase,
        ts_ms: int,
        collected_kg: float | None,
    ) -> Point:
        req = dispatch.request
        fields: dict[str, float | int | bool | str] = {
            "dispatch_id": req.dispatch_id,
            "stops": len(req.stops),
            "est_load_kg": float(req.est_load_kg),
            "route_km": float(req.route_km),
            "state": phase.value,
        }
        if any(stop.weight_estimated for stop in req.stops):
            fields["weight_estimated"] = True  # est_load_kg (and collected_kg) from fill
        if collected_kg is not None:
            fields["collected_kg"] = round(float(collected_kg), 1)
        return DISPATCH_MEASUREMENT, {"zone": req.zone, "truck_id": req.truck_id}, fields, ts_ms
