"""What is happening in the city now, as `make run`'s console shows it: bins near full, alerts
firing, dispatches and the cafe's and art center's latest figures.

Pure state fed with the MQTT messages the programs already publish (``feed``); no clock and
no I/O of its own, so its tests are plain calls. A message it cannot read is counted, never
raised: the console must not stop because one device sent nonsense.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from common.messages import AlertEvent, DispatchRequest, DispatchStatus
from common.topics import TopicError, Topics

# A bin from this fill level is "near full" on the console (the bin_full rule fires at 90 %).
NEAR_FULL_PCT = 80.0
# Rows per table: the console is one screen; the counts in the titles say how many there are.
MAX_ROWS = 6
# Dispatches are remembered for the table after they close, the most recent first.
MAX_DISPATCHES = 32

DISPATCH_ORDER = ("planned", "en_route", "completed", "cancelled")


@dataclass(slots=True)
class BinNow:
    device_id: str
    fill_pct: float
    weight_kg: float
    ts: str


@dataclass(slots=True)
class DispatchNow:
    dispatch_id: str
    truck_id: str
    zone: str
    stops: int
    est_load_kg: float
    state: str = "planned"
    collected_kg: float | None = None
    stops_done: int = 0
    seen: int = 0  # arrival order, for "most recent first"


@dataclass(slots=True)
class EnergyNow:
    """The latest reading of one energy meter (the cafe's)."""

    site: str
    device_id: str
    pv_power_w: float | None = None
    load_power_w: float | None = None
    grid_power_w: float | None = None
    battery_soc_pct: float | None = None
    first_pv_wh: float | None = None
    first_load_wh: float | None = None
    pv_energy_wh: float | None = None
    load_energy_wh: float | None = None

    def net_wh_since_start(self) -> float | None:
        """PV produced minus load consumed since the console first saw the meter."""
        if None in (self.first_pv_wh, self.first_load_wh, self.pv_energy_wh, self.load_energy_wh):
            return None
        assert self.pv_energy_wh is not None and self.first_pv_wh is not None
        assert self.load_energy_wh is not None and self.first_load_wh is not None
        return (self.pv_energy_wh - self.first_pv_wh) - (self.load_energy_wh - self.first_load_wh)


@dataclass(slots=True)
class GateNow:
    site: str
    device_id: str
    occupancy: int | None
    entries_total: int
    # Entries since the console first saw the gate, across counter resets (a device restart
    # starts again from 0: what it counted since then is new).
    entries_seen: int = 0

    def count(self, entries_total: int, occupancy: int | None) -> None:
        step = entries_total - self.entries_total
        self.entries_seen += step if step >= 0 else entries_total
        self.entries_total, self.occupancy = entries_total, occupancy


@dataclass
class Scene:
    """The state the console draws; ``feed`` every message of the subscribed topics."""

    topics: Topics
    bins: dict[str, BinNow] = field(default_factory=dict)
    alerts: dict[tuple[str, str, str], AlertEvent] = field(default_factory=dict)
    dispatches: dict[str, DispatchNow] = field(default_factory=dict)
    energy: dict[tuple[str, str], EnergyNow] = field(default_factory=dict)
    gates: dict[tuple[str, str], GateNow] = field(default_factory=dict)
    messages: int = 0
    unreadable: int = 0
    _arrivals: int = 0

    def subscriptions(self) -> list[str]:
        return [
            self.topics.all_telemetry(),
            self.topics.all_active_alerts(),
            self.topics.dispatch_requests(),
            self.topics.all_dispatch_status(),
        ]

    def feed(self, topic: str, payload: bytes) -> None:
        self.messages += 1
        try:
            self._feed(topic, payload)
        except (ValueError, TypeError, KeyError, TopicError, ValidationError):
            # ValidationError is a ValueError; listed for the reader. Nothing here may raise.
            self.unreadable += 1

    def _feed(self, topic: str, payload: bytes) -> None:
        if self.topics.is_active_alert(topic):
            self._active_alert(topic, payload)
        elif topic == self.topics.dispatch_requests():
            self._dispatch_request(DispatchRequest.model_validate_json(payload))
        elif topic.startswith(f"{self.topics.prefix}/dispatch/"):
            self.topics.parse_dispatch_status(topic)
            self._dispatch_status(DispatchStatus.model_validate_json(payload))
        else:
            where = self.topics.parse_device_topic(topic)
            if where.channel != "telemetry":
                return
            data = json.loads(payload)
            if not isinstance(data, dict):
                raise ValueError("telemetry is not an object")
            self._telemetry(where.site, where.kind, where.device_id, data)

    def _active_alert(self, topic: str, payload: bytes) -> None:
        parts = topic[len(f"{self.topics.prefix}/alerts/active/") :].split("/")
        if len(parts) != 3:
            raise ValueError("not an active alert topic")
        key = (parts[0], parts[1], parts[2])
        if not payload:  # the retained alert was cleared: resolved
            self.alerts.pop(key, None)
            return
        event = AlertEvent.model_validate_json(payload)
        if event.state == "firing":
            self.alerts[key] = event
        else:
            self.alerts.pop(key, None)

    def _dispatch_request(self, request: DispatchRequest) -> None:
        self._arrivals += 1
        known = self.dispatches.get(request.dispatch_id)
        self.dispatches[request.dispatch_id] = DispatchNow(
            request.dispatch_id,
            request.truck_id,
            request.zone,
            len(request.stops),
            request.est_load_kg,
            state=known.state if known else "planned",
            collected_kg=known.collected_kg if known else None,
            stops_done=known.stops_done if known else 0,
            seen=self._arrivals,
        )
        self._forget_old_dispatches()

    def _dispatch_status(self, status: DispatchStatus) -> None:
        self._arrivals += 1
        dispatch = self.dispatches.get(status.dispatch_id)
        if dispatch is None:  # a status seen before its request (retained, console restarted)
            dispatch = DispatchNow(
                status.dispatch_id, status.truck_id or "?", status.zone or "?", 0, 0.0
            )
            self.dispatches[status.dispatch_id] = dispatch
        dispatch.state = str(status.state)
        dispatch.seen = self._arrivals
        dispatch.stops_done = len(status.stops_done)
        if status.collected_kg is not None:
            dispatch.collected_kg = status.collected_kg
        self._forget_old_dispatches()

    def _forget_old_dispatches(self) -> None:
        while len(self.dispatches) > MAX_DISPATCHES:
            oldest = min(self.dispatches.values(), key=lambda d: d.seen)
            del self.dispatches[oldest.dispatch_id]

    def _telemetry(self, site: str, kind: str, device_id: str, data: dict[str, Any]) -> None:
        if kind == "ewaste_bin":
            self.bins[device_id] = BinNow(
                device_id, _number(data, "fill_pct"), _number(data, "weight_kg"), str(data["ts"])
            )
        elif kind == "energy_meter":
            meter = self.energy.setdefault((site, device_id), EnergyNow(site, device_id))
            for name in ("pv_power_w", "load_power_w", "grid_power_w", "battery_soc_pct"):
                if name in data:
                    setattr(meter, name, _number(data, name))
            if "pv_energy_wh" in data and "load_energy_wh" in data:
                meter.pv_energy_wh = _number(data, "pv_energy_wh")
                meter.load_energy_wh = _number(data, "load_energy_wh")
                if meter.first_pv_wh is None or meter.pv_energy_wh < meter.first_pv_wh:
                    meter.first_pv_wh, meter.first_load_wh = (
                        meter.pv_energy_wh,
                        meter.load_energy_wh,
                    )
        elif kind == "visitor_counter":
            occupancy = int(_number(data, "occupancy")) if "occupancy" in data else None
            entries = int(_number(data, "entries_total"))
            gate = self.gates.get((site, device_id))
            if gate is None:
                self.gates[(site, device_id)] = GateNow(site, device_id, occupancy, entries)
            else:
                gate.count(entries, occupancy)

    # -- what the console shows ------------------------------------------------------------
    def near_full(self) -> list[BinNow]:
        full = [b for b in self.bins.values() if b.fill_pct >= NEAR_FULL_PCT]
        return sorted(full, key=lambda b: (-b.fill_pct, b.device_id))

    def firing(self) -> list[AlertEvent]:
        order = {"critical": 0, "warning": 1, "info": 2}
        return sorted(
            self.alerts.values(),
            key=lambda a: (order.get(str(a.severity), 3), a.rule, a.device_id),
        )

    def recent_dispatches(self) -> list[DispatchNow]:
        return sorted(self.dispatches.values(), key=lambda d: -d.seen)

    def dispatch_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(DISPATCH_ORDER, 0)
        for dispatch in self.dispatches.values():
            counts[dispatch.state] = counts.get(dispatch.state, 0) + 1
        return counts

    def line(self) -> str:
        """One log line for the plain (not a terminal) console."""
        counts = self.dispatch_counts()
        inside = sum(g.occupancy or 0 for g in self.gates.values())
        return (
            f"bins near full {len(self.near_full())}  alerts firing {len(self.alerts)}  "
            f"dispatches planned {counts['planned']} en route {counts['en_route']} "
            f"completed {counts['completed']}  people inside {inside}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The same content as plain data, for data/run/status.json."""
        return {
            "bins_near_full": [
                {"device_id": b.device_id, "fill_pct": b.fill_pct} for b in self.near_full()
            ],
            "alerts_firing": [
                {"rule": a.rule, "site": a.site, "device_id": a.device_id, "value": a.value}
                for a in self.firing()
            ],
            "dispatches": [
                {
                    "dispatch_id": d.dispatch_id,
                    "truck_id": d.truck_id,
                    "zone": d.zone,
                    "state": d.state,
                    "collected_kg": d.collected_kg,
                }
                for d in self.recent_dispatches()
            ],
            "people_inside": {
                site: sum(g.occupancy or 0 for g in self.gates.values() if g.site == site)
                for site in sorted({g.site for g in self.gates.values()})
            },
            "messages": self.messages,
            "unreadable": self.unreadable,
        }


def _number(data: dict[str, Any], name: str) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} is not a finite number")
    return float(value)
