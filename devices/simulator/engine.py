"""The discrete-event loop: a heap of next report times, scripted events and truck stops,
driven by a :class:`~devices.simulator.clock.Pacer`, publishing through a ``Publisher``.

Everything that reaches a payload derives from the seed, the scenario and simulated time, so
the same inputs give the same bytes in the same order.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple, Protocol

from common.devices import Device, Registry
from common.kinds import VisitorCounterParams
from common.messages import DispatchRequest, DispatchStatus, DispatchStop
from common.timestamps import ms_to_iso
from common.topics import TopicError, Topics
from devices.simulator.clock import Pacer
from devices.simulator.faults import EXPECTED_CODE, FaultInjector, encode
from devices.simulator.models import Model, ModelContext, build_model
from devices.simulator.models.ewaste_bin import EwasteBin
from devices.simulator.models.visitor_counter import VisitorCounter
from devices.simulator.scenario import Scenario
from devices.simulator.trucks import Fleet, TruckRun

log = logging.getLogger(__name__)

FLEET_CLIENT = "fleet"


class Priority(IntEnum):
    """Which action goes first at the same instant: scripted events, trucks, device reports."""

    EVENT = 0
    TRUCK = 1
    REPORT = 2


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message; ``client`` names the connection (a device id, or the fleet)."""

    client: str
    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1


class Publisher(Protocol):
    def publish(self, message: Outgoing) -> None: ...


@dataclass(slots=True)
class SimDevice:
    device: Device
    model: Model
    telemetry_topic: str
    status_topic: str
    seq: int = 0
    silent_until: int = 0
    held: bytes | None = None  # an out-of-order message waiting for the next one

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclass(slots=True)
class Tally:
    """What the run did, for the summary."""

    telemetry: Counter[str] = field(default_factory=Counter)
    status: int = 0
    dispatch_status: int = 0
    suppressed: int = 0
    events: Counter[str] = field(default_factory=Counter)
    dispatches: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Report:
    """A device's next reading is due; it schedules the one after."""

    device: SimDevice
    priority = Priority.REPORT


@dataclass(frozen=True, slots=True)
class ScriptedEvent:
    """The scenario's ``events[index]`` happens."""

    index: int
    priority = Priority.EVENT


@dataclass(frozen=True, slots=True)
class _TruckAction:
    run: TruckRun
    priority = Priority.TRUCK


@dataclass(frozen=True, slots=True)
class TruckStart(_TruckAction):
    """The truck leaves the depot."""


@dataclass(frozen=True, slots=True)
class TruckStop(_TruckAction):
    """The truck reaches ``run.stops[index]`` and empties that bin."""

    index: int


@dataclass(frozen=True, slots=True)
class TruckBack(_TruckAction):
    """The truck is back at the depot: the dispatch is completed."""


Action = Report | ScriptedEvent | TruckStart | TruckStop | TruckBack


class Due(NamedTuple):
    """A heap entry: time, then priority, then insertion order (unique, so the action itself
    is never compared)."""

    at_ms: int
    priority: Priority
    order: int
    action: Action


def select_devices(scenario: Scenario, registry: Registry) -> list[Device]:
    """The scenario's devices (all by default) plus synthetic clones, intervals overridden."""
    chosen = list(registry.devices)
    if scenario.devices is not None:
        known = {d.id for d in chosen}
        unknown = sorted(set(scenario.devices) - known)
        if unknown:
            raise ValueError(f"scenario {scenario.name}: devices not in registry: {unknown}")
        chosen = [d for d in chosen if d.id in scenario.devices]
    if scenario.kinds is not None:
        chosen = [d for d in chosen if d.kind in scenario.kinds]
    for kind, count in scenario.synthetic.model_dump().items():
        templates = registry.devices_of_kind(kind)
        for i in range(count):
            base = templates[i % len(templates)]
            update: dict[str, Any] = {"id": f"syn-{kind.replace('_', '-')}-{i + 1:05d}"}
            if base.latitude is not None and base.longitude is not None:
                update["latitude"] = base.latitude + ((i * 37) % 200 - 100) * 1e-5
                update["longitude"] = base.longitude + ((i * 53) % 200 - 100) * 1e-5
            chosen.append(base.model_copy(update=update))
    out = []
    for d in chosen:
        interval = scenario.interval_s.get(d.id) or scenario.interval_s.get(d.kind)
        out.append(d.model_copy(update={"interval_s": interval}) if interval else d)
    return out


class Engine:
    """Runs one scenario window ``[start_ms, end_ms)``; ``submit_dispatch`` is thread-safe."""

    def __init__(
        self,
        scenario: Scenario,
        registry: Registry,
        topics: Topics,
        publisher: Publisher,
        *,
        start_ms: int,
        end_ms: int,
        seed: int | None = None,
    ) -> None:
        self.scenario = scenario
        self.registry = registry
        self.topics = topics
        self.publisher = publisher
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.seed = scenario.seed if seed is None else seed
        self.now_ms = start_ms
        self.tally = Tally()
        self.wake = threading.Event()
        self._inbox: queue.SimpleQueue[DispatchRequest] = queue.SimpleQueue()
        self._heap: list[Due] = []
        self._order = 0
        self.devices = [self._build(d) for d in select_devices(scenario, registry)]
        self.by_id = {sd.device.id: sd for sd in self.devices}
        bins = {sd.device.id: sd.model for sd in self.devices if isinstance(sd.model, EwasteBin)}
        self.fleet = Fleet(registry, bins)
        self.runs: dict[str, TruckRun] = {}
        self.injector = FaultInjector(scenario.faults, self.seed, start_ms, end_ms, topics)
        for index, event in enumerate(scenario.events):
            at = scenario.offset_ms(event.at, start_ms)
            if event.device is not None and event.device not in self.by_id:
                raise ValueError(
                    f"scenario {scenario.name}: events[{index}].device: {event.device!r} "
                    "is not simulated in this scenario"
                )
            if event.type == "group_visit":
                model = self.by_id[event.device or ""].model
                if not isinstance(model, VisitorCounter):
                    raise ValueError(f"events[{index}]: group_visit needs a visitor_counter")
                model.add_group(at, event.size, event.dwell_min)
                self.tally.events[event.type] += 1
            else:
                self._push(at, ScriptedEvent(index))
        for sd in self.devices:
            # Spread first reports over one interval (stable per device id, not per order).
            phase = _stable_phase(sd.device.id, sd.device.interval_s * 1000)
            self._push(start_ms + phase, Report(sd))

    # -- construction ----------------------------------------------------------------------
    def _build(self, device: Device) -> SimDevice:
        site = self.registry.site(device.site)
        if site is None:
            raise ValueError(f"device {device.id}: unknown site {device.site}")
        params = dict(self.scenario.params.get(device.kind, {}))
        if device.kind == "visitor_counter" and "gate_share" not in params:
            gates = [d for d in self.registry.devices_of_kind(device.kind) if d.site == site.id]
            people = [d.params_of(VisitorCounterParams).capacity_people or 1 for d in gates]
            own = device.params_of(VisitorCounterParams).capacity_people or 1
            params["gate_share"] = own / (sum(people) or 1)
        ctx = ModelContext(
            device=device,
            site=site,
            seed=self.seed,
            start_ms=self.start_ms,
            params=params,
            initial=dict(self.scenario.initial.get(device.id, {})),
        )
        kind, did = device.kind, device.id
        return SimDevice(
            device,
            build_model(ctx),
            self.topics.telemetry(site.id, kind, did),
            self.topics.status(site.id, kind, did),
        )

    def _push(self, at_ms: int, action: Action) -> None:
        self._order += 1
        heapq.heappush(self._heap, Due(at_ms, action.priority, self._order, action))

    # -- outside input ---------------------------------------------------------------------
    def submit_dispatch(self, request: DispatchRequest) -> None:
        self._inbox.put(request)
        self.wake.set()

    def _drain_inbox(self, now_ms: int) -> None:
        while True:
            try:
                request = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._dispatch(request, min(max(now_ms, self.now_ms), self.end_ms))

    # -- the loop --------------------------------------------------------------------------
    def run(
        self,
        pacer: Pacer,
        stop: threading.Event | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        stop = stop or threading.Event()
        for sd in self.devices:
            self._send(sd.device.id, sd.status_topic, b"online", retain=True)
            self.tally.status += 1
        processed = 0
        while self._heap and not stop.is_set():
            due = self._heap[0].at_ms
            if due >= self.end_ms:
                break
            if not pacer.wait_until(due, self.wake):
                self.wake.clear()
                self._drain_inbox(min(pacer.sim_now(), due))
                continue
            self._drain_inbox(due)
            if self._heap[0].at_ms < due:  # a dispatch just scheduled something earlier
                continue
            at, _, _, action = heapq.heappop(self._heap)
            self.now_ms = at
            self._handle(at, action)
            processed += 1
            if progress is not None and processed % 64 == 0:
                progress(at)
        self._drain_inbox(self.now_ms)
        for sd in self.devices:
            if sd.held is not None:
                self._send(sd.device.id, sd.telemetry_topic, sd.held)
                self.tally.telemetry[sd.device.kind] += 1
                sd.held = None
        if progress is not None:
            progress(self.now_ms)

    def shutdown_statuses(self) -> None:
        """A clean stop is not a crash: say ``offline`` ourselves (the Will is for crashes)."""
        for sd in self.devices:
            self._send(sd.device.id, sd.status_topic, b"offline", retain=True)
            self.tally.status += 1

    def _handle(self, at: int, action: Action) -> None:
        match action:
            case Report(sd):
                self._push(at + sd.device.interval_s * 1000, action)
                self._report(sd, at)
            case ScriptedEvent(index):
                self._event(index, at)
            case TruckStart(run):
                self._status(run.status("en_route", at, "left the depot"))
            case TruckStop(run, index):
                self.fleet.serve(run, index, at)
            case TruckBack(run):
                self._status(self.fleet.finish(run, at))
                self.tally.dispatches["completed"] += 1

    # -- devices ---------------------------------------------------------------------------
    def _send(self, client: str, topic: str, payload: bytes, retain: bool = False) -> None:
        self.publisher.publish(Outgoing(client, topic, payload, retain))

    def _report(self, sd: SimDevice, now: int) -> None:
        fields = sd.model.reading(now)  # physics advances even while the device is quiet
        if now < sd.silent_until:
            self.tally.suppressed += 1
            return
        did, kind = sd.device.id, sd.device.kind
        fault = self.injector.pick(did, now) if self.injector.specs else None
        if fault == "silent":
            sd.silent_until = now + int(self.injector.spec(fault).duration_s * 1000)
            self.tally.suppressed += 1
            return
        out: list[bytes] = []
        if fault is not None and EXPECTED_CODE[fault] is not None:
            bad = self.injector.corrupt(fault, kind, did, now, sd.next_seq(), fields)
            self.injector.judge(fault, sd.telemetry_topic, bad, now)
            out.append(bad)
        elif fault == "burst":
            # A device flushing its buffer after a network hiccup: many readings at once.
            size = self.injector.spec(fault).size
            for back in range(size - 1, -1, -1):
                ts = now - back * 1000
                out.append(encode({"ts": ms_to_iso(ts), "seq": sd.next_seq(), **fields}))
        else:
            good = encode({"ts": ms_to_iso(now), "seq": sd.next_seq(), **fields})
            if fault == "out_of_order":
                sd.held = good
                return
            out.append(good)
            if fault == "duplicate":
                out.append(good)
        if sd.held is not None:
            out.append(sd.held)  # arrives after a newer reading: late and out of order
            sd.held = None
        for payload in out:
            self._send(did, sd.telemetry_topic, payload)
        self.tally.telemetry[kind] += len(out)

    def _event(self, index: int, at: int) -> None:
        event = self.scenario.events[index]
        self.tally.events[event.type] += 1
        if event.type == "counter_reset" and event.device:
            sd = self.by_id[event.device]
            sd.model.reading(at)
            sd.model.reset_counters()
        elif event.type == "silence" and event.device:
            sd = self.by_id[event.device]
            sd.silent_until = at + int(event.duration_s * 1000)
        elif event.type == "dispatch":
            stops = []
            for device_id in event.stops:
                d = self.registry.device(device_id)
                if d is None or d.latitude is None or d.longitude is None:
                    raise ValueError(f"events[{index}]: dispatch stop {device_id!r} has no place")
                stops.append(
                    DispatchStop(device_id=d.id, latitude=d.latitude, longitude=d.longitude)
                )
            truck = event.truck or (self.registry.trucks[0].id if self.registry.trucks else "t1")
            zone = self.registry.zone_of(event.stops[0]) if event.stops else None
            self._dispatch(
                DispatchRequest(
                    dispatch_id=f"{self.scenario.name}-{index}",
                    truck_id=truck,
                    zone=zone or "none",
                    stops=stops,
                    est_load_kg=0.0,
                    route_km=0.0,
                    reason="scenario event",
                    created_at=ms_to_iso(at),
                ),
                at,
            )

    # -- trucks ----------------------------------------------------------------------------
    def _status(self, status: DispatchStatus) -> None:
        try:
            topic = self.topics.dispatch_status(status.dispatch_id)
        except TopicError as exc:
            log.warning("dispatch status not published", extra={"error": str(exc)})
            return
        self._send(FLEET_CLIENT, topic, status.model_dump_json().encode(), retain=True)
        self.tally.dispatch_status += 1

    def _dispatch(self, request: DispatchRequest, now: int) -> None:
        self.tally.dispatches["received"] += 1
        try:
            self.topics.dispatch_status(request.dispatch_id)
        except TopicError as exc:
            log.warning("dispatch request refused", extra={"error": str(exc)})
            self.tally.dispatches["refused"] += 1
            return
        if request.dispatch_id in self.runs:
            self.tally.dispatches["duplicate"] += 1  # QoS 1 redelivery: already driving it
            return
        run = self.fleet.plan(request, now)
        self.runs[request.dispatch_id] = run
        self._push(run.start_ms, TruckStart(run))
        for i, stop in enumerate(run.stops):
            self._push(stop.arrive_ms, TruckStop(run, i))
        self._push(run.return_ms, TruckBack(run))

    # -- results ---------------------------------------------------------------------------
    def overflow_minutes(self) -> dict[str, float]:
        out = {}
        for sd in self.devices:
            if isinstance(sd.model, EwasteBin) and sd.model.overflow_s > 0:
                out[sd.device.id] = round(sd.model.overflow_s / 60, 1)
        return out


def _stable_phase(device_id: str, interval_ms: int) -> int:
    # A tiny string hash that does not depend on PYTHONHASHSEED.
    h = 0
    for ch in device_id:
        h = (h * 131 + ord(ch)) % 1_000_003
    return (h * 7919) % max(1, interval_ms) // 1000 * 1000
