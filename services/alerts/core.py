"""The alerts service's pure core: the rule engine, the alert lifecycle and the dispatch desk,
coupled through bin collections. Messages, ticks and retained state in; typed effects out.

Like the parts it joins it has no clock (callers pass the wall time) and no I/O: the service
executes the effects (MQTT publishes, notifiers, InfluxDB points, metrics, logs) in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from pydantic import ValidationError

from common.devices import Registry
from common.identity import DEFAULT_MAX_UNKNOWN, DeviceGate, UnknownDevices
from common.kinds import MAX_FUTURE_MS
from common.messages import AlertEvent, DispatchRequest, DispatchStatus
from common.payloads import UNKNOWN_DEVICE_LIMIT, Reading, Rejection, StatusReading, parse_message
from common.schema import Point
from common.timestamps import iso_to_ms
from common.topics import TopicError, Topics, check_id
from services.alerts.alert_lifecycle import DEFAULT_MAX_OPEN_ALERTS, Alert, AlertKey, Transition
from services.alerts.collected import CollectedBins
from services.alerts.config import RulesFile
from services.alerts.dispatch.desk import DeskOutput, DispatchDesk, DispatchPhase, OpenDispatch
from services.alerts.rule_engine import RuleEngine
from services.alerts.rules.base import DEFAULT_HISTORY_MAX_POINTS


class Inbound(NamedTuple):
    """One MQTT message as the core sees it."""

    topic: str
    payload: bytes
    arrived: float
    """Monotonic seconds at arrival; only measured against, never judged on."""
    retained: bool = False
    """Delivered from the broker's retained store (at subscribe time)."""


# -- effects: what the service must do, in the order given ----------------------------------
@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``payload`` on ``topic``, QoS 1, not retained."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Retain:
    """Publish ``payload`` on ``topic``, QoS 1, retained."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class ClearRetained:
    """Clear the retained message of ``topic`` (an empty retained publish, QoS 1)."""

    topic: str


@dataclass(frozen=True, slots=True)
class Notify:
    """Hand an alert transition to every alert notifier (MQTT first)."""

    transition: Transition
    arrived: float | None
    """Arrival of the message that caused it; None when time caused it."""


@dataclass(frozen=True, slots=True)
class WritePoints:
    """Write the desk's ``dispatch``, ``dispatch_stop`` and ``collection`` points to InfluxDB
    (if it is enabled)."""

    points: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class DispatchPlanned:
    """A dispatch request was published: tell the dispatch webhook, count and log it."""

    request: DispatchRequest


@dataclass(frozen=True, slots=True)
class DispatchClosed:
    """A dispatch closed (completed, cancelled or timed out) and its record was cleared."""

    dispatch_id: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """A telemetry or status message passed validation and was judged."""

    watermark_ms: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A telemetry or status message failed validation (counted, never judged)."""

    topic: str
    rejection: Rejection


@dataclass(frozen=True, slots=True)
class AlertRefused:
    """``count`` alerts of ``rule`` were not opened (nor restored): ``max_open_alerts`` are
    open already."""

    rule: str
    count: int


@dataclass(frozen=True, slots=True)
class Held:
    """The message waits, unjudged, until the retained state is restored (so it must not be
    acknowledged yet); ``StateRestored`` later means every held message has been judged."""


@dataclass(frozen=True, slots=True)
class StateRestored:
    """Every retained alert and dispatch is in; held messages follow as further effects."""

    firing: int
    open_dispatches: int
    held_messages: int


@dataclass(frozen=True, slots=True)
class Log:
    """Something worth a log line that is not an error of the service (bad retained input)."""

    level: int
    message: str
    extra: Mapping[str, object]
    code: str | None = None
    """Set when the line is about input refused (bad retained state, a forged dispatch
    status): counted under this rejection code."""


Effect = (
    Publish
    | Retain
    | ClearRetained
    | Notify
    | WritePoints
    | DispatchPlanned
    | DispatchClosed
    | Accepted
    | Rejected
    | AlertRefused
    | Held
    | StateRestored
    | Log
)


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The core's tunables, in milliseconds of event time (or of lag, for ``live_lag_ms``)."""

    allowed_lateness_ms: int = 0
    opportunistic_pct: float = 40.0
    dispatch_timeout_ms: int = 8 * 3_600_000
    live_lag_ms: int = 60_000
    """A reading at most this far behind the wall clock makes the stream live."""
    unknown_devices: UnknownDevices = "accept"
    unknown_devices_max: int = DEFAULT_MAX_UNKNOWN
    """``UNKNOWN_DEVICES``/``UNKNOWN_DEVICES_MAX`` (see ``common.identity``): also the bound
    on the devices whose state alerts keeps."""
    max_record_lead_ms: int = 300_000
    """A retained alert or dispatch dated later than the wall clock plus this is refused."""
    history_max_points: int = DEFAULT_HISTORY_MAX_POINTS
    """Points of history each rule keeps per device (``ALERTS_HISTORY_MAX_POINTS``)."""
    max_open_alerts: int = DEFAULT_MAX_OPEN_ALERTS
    """Pending and firing alerts at once (``ALERTS_MAX_OPEN_ALERTS``); more are refused."""
    max_future_ms: int = MAX_FUTURE_MS
    """A reading stamped later than the wall clock plus this is ``ts_in_future`` (``MAX_FUTURE_S``,
    the same bound as ingest's)."""


HELD = Held()

REFUSAL_WARN_EVERY_MS = 60_000
"""One warning line per minute at most while readings are refused for the bound."""

# A dispatch status may only move an open dispatch forward (``planned`` is our own echo).
_NEXT_STATES: dict[DispatchPhase, frozenset[str]] = {
    DispatchPhase.PLANNED: frozenset({"en_route", "completed", "cancelled"}),
    DispatchPhase.EN_ROUTE: frozenset({"en_route", "completed", "cancelled"}),
}


class AlertsCore:
    """Restores retained state first (holding telemetry until the sync marker comes back),
    then judges telemetry and status, follows dispatches, and couples the two: a firing
    ``dispatch`` alert asks the desk for a collection, and a collection resolves the bin's
    alerts and makes the rules forget it.

    Time is the watermark (latest reading ``ts``); once the stream is *live* (its readings
    are at most ``live_lag_ms`` behind the wall clock) the wall clock moves time as well.
    """

    def __init__(
        self,
        rules: RulesFile,
        registry: Registry,
        topics: Topics,
        settings: CoreSettings,
        nonce: str,
    ) -> None:
        self.topics = topics
        self.settings = settings
        self.registry = registry
        self.gate = DeviceGate(registry, settings.unknown_devices, settings.unknown_devices_max)
        self.nonce = nonce.encode()
        collected = CollectedBins()
        self.engine = RuleEngine(
            rules,
            registry,
            settings.allowed_lateness_ms,
            collected,
            history_max_points=settings.history_max_points,
            max_open_alerts=settings.max_open_alerts,
        )
        self.desk = DispatchDesk(
            registry, settings.opportunistic_pct, settings.dispatch_timeout_ms, collected
        )
        self.collected = collected
        self.synced = False
        self.live = False
        self._held: list[Inbound] = []
        self._sync_topic = topics.alerts_sync()
        self.refused_readings = 0
        self._refusals_warned_ms: int | None = None
        self._refused_since_warning = 0
        self.refused_alerts = 0
        self._alerts_refusal_warned_ms: int | None = None
        self._alerts_refused_since_warning = 0

    # -- views (health, metrics, tests) ----------------------------------------------------
    @property
    def watermark_ms(self) -> int:
        return self.engine.watermark_ms

    def alert(self, key: AlertKey) -> Alert | None:
        """The pending or firing alert of ``(rule, site, device_id)``, if any."""
        return self.engine.lifecycle.get(key)

    def firing_count(self) -> int:
        return len(self.engine.lifecycle.firing())

    def pending_count(self) -> int:
        return len(self.engine.lifecycle.pending())

    def open_dispatch_ids(self) -> set[str]:
        return set(self.desk.open)

    def unknown_devices_seen(self) -> int:
        """Distinct unregistered (site, kind, device) whose state alerts keeps (bounded by
        ``unknown_devices_max``; always 0 when unknown devices are rejected)."""
        return self.gate.unknown_seen

    def now_ms(self, wall_ms: int) -> int:
        """Event time now: the watermark, or the wall clock if later and the stream is live."""
        if self.live:
            return max(self.engine.watermark_ms, wall_ms)
        return self.engine.watermark_ms

    # -- restoring -------------------------------------------------------------------------
    def sync_marker(self) -> Publish:
        """The marker to send once subscribed: the broker queues every retained message of
        the subscriptions before it, so its return means the retained state is all in."""
        return Publish(self._sync_topic, self.nonce)

    def finish_restoring(self, wall_ms: int) -> list[Effect]:
        """Judge from now on (the marker came back, or waiting for it took too long)."""
        self.synced = True
        held, self._held = self._held, []
        out: list[Effect] = [
            StateRestored(self.firing_count(), len(self.desk.open), len(held)),
        ]
        for item in held:
            out += self.receive(item, wall_ms)
        return out

    # -- input -----------------------------------------------------------------------------
    def receive(self, item: Inbound, wall_ms: int) -> list[Effect]:
        topic, payload = item.topic, item.payload
        topics = self.topics
        if topic == self._sync_topic:
            if payload == self.nonce and not self.synced:
                return self.finish_restoring(wall_ms)
            return []
        if topics.service_namespace(topic) is not None:
            return self._service_message(item, wall_ms)
        if not self.synced:
            self._held.append(item)  # judged once the retained state is in
            return [HELD]
        message = parse_message(
            topic,
            payload,
            topics,
            now_ms=wall_ms,
            gate=self.gate,
            max_future_ms=self.settings.max_future_ms,
        )
        if isinstance(message, Rejection):
            if message.code == UNKNOWN_DEVICE_LIMIT:
                return self._refused(topic, message, wall_ms)
            return [Rejected(topic, message)]
        if isinstance(message, StatusReading):
            if not self.live and self.engine.watermark_ms:
                # A replayed stream: the status belongs to the stream's time, not the clock's.
                message = replace(message, ts_ms=self.engine.watermark_ms)
        else:
            self.live = wall_ms - message.ts_ms <= self.settings.live_lag_ms
        out = self._transitions(self.engine.handle(message), item.arrived, wall_ms)
        out.append(Accepted(self.engine.watermark_ms))
        if isinstance(message, Reading) and message.kind == "ewaste_bin":
            out += self._desk(self.desk.observe(message), wall_ms)
        if self.desk.waiting():
            out += self._desk(self.desk.plan(self.now_ms(wall_ms)), wall_ms)
        return out

    def tick(self, wall_ms: int) -> list[Effect]:
        """The wall clock moved: live absence, keep_firing_for, repeats, dispatch timeouts."""
        if not self.synced:
            return []
        out: list[Effect] = []
        if self.live:
            out += self._transitions(self.engine.tick(wall_ms), None, wall_ms)
        if self.engine.watermark_ms:
            out += self._desk(self.desk.tick(self.now_ms(wall_ms)), wall_ms)
        return out

    # -- the services' own topics: routed on their exact shape -------------------------------
    def _service_message(self, item: Inbound, wall_ms: int) -> list[Effect]:
        """A topic under a reserved level (``alerts``, ``dispatch``, ``deadletter``): state
        or dispatch progress if it has exactly the shape of one, else nobody's message (a
        device topic pattern can match ``P/alerts/_dispatch/{device}/telemetry``)."""
        topics, topic = self.topics, item.topic
        if topics.is_active_alert(topic):
            if not self.synced and item.payload:
                return self._restore_alert(item, wall_ms)
            return [] if _fits(topics.parse_active_alert, topic) else self._foreign(item)
        if topics.is_dispatch_record(topic):
            if not self.synced and item.payload:
                return self._restore_dispatch(item, wall_ms)
            return [] if _fits(topics.parse_dispatch_record, topic) else self._foreign(item)
        if _fits(topics.parse_dispatch_status, topic):
            if not self.synced:
                self._held.append(item)  # judged once the dispatches are restored
                return [HELD]
            return self._dispatch_status(item, wall_ms)
        if topic == topics.dispatch_requests():
            return []
        return self._foreign(item)

    def _foreign(self, item: Inbound) -> list[Effect]:
        """Counted and dropped; if retained in our own subtree, cleared so that no later
        start (nor any other reader of ``P/alerts/#``) takes it for state."""
        if not item.payload:
            return []  # a clear, ours or anyone's
        out: list[Effect] = [
            Rejected(
                item.topic,
                Rejection(
                    "service_topic",
                    "not a topic of the contract, under a level reserved for the services",
                ),
            )
        ]
        if item.retained and self.topics.service_namespace(item.topic) == "alerts":
            out.append(ClearRetained(item.topic))
        return out

    def _refused_state(self, item: Inbound, code: str, message: str, error: str) -> list[Effect]:
        out: list[Effect] = [
            Log(logging.WARNING, message, {"topic": item.topic, "error": error}, code)
        ]
        if item.retained and self.topics.service_namespace(item.topic) == "alerts":
            out.append(ClearRetained(item.topic))
        return out

    def _restore_alert(self, item: Inbound, wall_ms: int) -> list[Effect]:
        topic = item.topic
        try:
            rule, site, device_id = self.topics.parse_active_alert(topic)
            event = AlertEvent.model_validate_json(item.payload)
        except (TopicError, ValidationError) as exc:
            return self._refused_state(
                item, "bad_alert_record", "ignoring unreadable retained alert", str(exc)
            )
        problem = self._alert_problem(rule, site, device_id, event, wall_ms)
        if problem is not None:
            return self._refused_state(
                item, "bad_alert_record", "ignoring invalid retained alert", problem
            )
        spec = self.engine.specs.get(rule)
        if spec is None or event.state != "firing":
            # The rule was removed from the rules file: nobody will ever resolve it.
            return [
                ClearRetained(self.topics.alert_active(rule, site, device_id)),
                Log(logging.INFO, "cleared retained alert of a removed rule", {"topic": topic}),
            ]
        device = self.registry.device(device_id)
        kind = event.kind or (device.kind if device is not None else "")
        refusal = self.gate.check(site, kind, device_id)  # the same bound as for readings
        if refusal is not None:
            return self._refused_state(
                item, refusal.code, "ignoring retained alert of a refused device", refusal.reason
            )
        if not self.engine.lifecycle.restore(spec, event):
            return self._alerts_refused(wall_ms)  # left retained: it is not ours to drop
        self.engine.adopt(rule, site, kind, device_id)  # so its next ``clear`` resolves it
        if spec.dispatch and event.kind == "ewaste_bin":
            self.desk.want(event.device_id)
        return []

    def _alert_problem(
        self, rule: str, site: str, device_id: str, event: AlertEvent, wall_ms: int
    ) -> str | None:
        if (event.rule, event.site, event.device_id) != (rule, site, device_id):
            return "the event names another alert than its topic"
        device = self.registry.device(device_id)
        if device is not None and (device.site, device.kind) != (site, event.kind or device.kind):
            return f"device {device_id!r} is not a {event.kind} of site {site!r}"
        for stamp in (event.ts, event.started_at):
            if stamp is not None and (problem := self._date_problem(stamp, wall_ms)):
                return problem
        return None

    def _restore_dispatch(self, item: Inbound, wall_ms: int) -> list[Effect]:
        try:
            dispatch_id = self.topics.parse_dispatch_record(item.topic)
            request = DispatchRequest.model_validate_json(item.payload)
        except (TopicError, ValidationError) as exc:
            return self._refused_state(
                item, "bad_dispatch_record", "ignoring unreadable dispatch record", str(exc)
            )
        problem = self._record_problem(dispatch_id, request, wall_ms)
        if problem is not None:
            return self._refused_state(
                item, "bad_dispatch_record", "ignoring invalid dispatch record", problem
            )
        self.desk.restore(request)
        return []

    def _record_problem(
        self, dispatch_id: str, request: DispatchRequest, wall_ms: int
    ) -> str | None:
        """Why a retained dispatch record is not one the desk could have written, if so."""
        if request.dispatch_id != dispatch_id:
            return "the record names another dispatch than its topic"
        try:
            check_id(request.truck_id, "truck_id")
            check_id(request.zone, "zone")
            for stop in request.stops:
                check_id(stop.device_id, "device_id")
        except TopicError as exc:
            return str(exc)
        if self.registry.truck(request.truck_id) is None:
            return f"unknown truck {request.truck_id!r}"
        if request.zone not in self.registry.zones():
            return f"unknown zone {request.zone!r}"
        if not request.stops:
            return "a dispatch without stops"
        for stop in request.stops:
            if self.registry.zone_of(stop.device_id) != request.zone:
                return f"{stop.device_id!r} is no bin of zone {request.zone!r}"
        return self._date_problem(request.created_at, wall_ms)

    def _date_problem(self, stamp: str, wall_ms: int) -> str | None:
        try:
            at_ms = iso_to_ms(stamp)
        except (ValueError, OverflowError):
            return f"unreadable time {stamp[:40]!r}"
        if at_ms > wall_ms + self.settings.max_record_lead_ms:
            return f"dated in the future ({stamp[:40]})"
        return None

    def _dispatch_status(self, item: Inbound, wall_ms: int) -> list[Effect]:
        """A truck's progress closes or moves only the dispatch it is consistent with."""
        if not item.payload:
            return []
        dispatch_id = self.topics.parse_dispatch_status(item.topic)
        try:
            status = DispatchStatus.model_validate_json(item.payload)
        except ValidationError as exc:
            return self._bad_status(item, str(exc))
        if status.dispatch_id != dispatch_id:
            return self._bad_status(item, "the status names another dispatch than its topic")
        dispatch = self.desk.open.get(dispatch_id)
        if dispatch is None or status.state == "planned":
            return []  # a closed dispatch's last word, or our own ``planned`` coming back
        problem = _status_problem(status, dispatch)
        if problem is not None:
            return self._bad_status(item, problem)
        return self._desk(self.desk.on_status(status, self.now_ms(wall_ms) or wall_ms), wall_ms)

    def _bad_status(self, item: Inbound, error: str) -> list[Effect]:
        return [
            Log(
                logging.WARNING,
                "ignoring dispatch status",
                {"topic": item.topic, "error": error},
                "bad_dispatch_status",
            )
        ]

    # -- the bound on unregistered devices (``common.identity``) ------------------------------
    def _refused(self, topic: str, rejection: Rejection, wall_ms: int) -> list[Effect]:
        """Counted like any rejection, and said once a minute at most while it lasts."""
        self.refused_readings += 1
        self._refused_since_warning += 1
        out: list[Effect] = [Rejected(topic, rejection)]
        last = self._refusals_warned_ms
        if last is None or wall_ms - last >= REFUSAL_WARN_EVERY_MS:
            out.append(
                Log(
                    logging.WARNING,
                    "readings of new unregistered devices refused: UNKNOWN_DEVICES_MAX reached",
                    {
                        "unknown_devices_max": self.settings.unknown_devices_max,
                        "refused": self._refused_since_warning,
                        "topic": topic,
                    },
                )
            )
            self._refusals_warned_ms = wall_ms
            self._refused_since_warning = 0
        return out

    # -- alert transitions -------------------------------------------------------------------
    def _transitions(
        self, transitions: list[Transition], arrived: float | None, wall_ms: int = 0
    ) -> list[Effect]:
        out: list[Effect] = []
        for transition in transitions:
            out.append(Notify(transition, arrived))
            if transition.spec.dispatch and transition.event.kind == "ewaste_bin":
                self._update_wanted(transition.event.device_id)
        if self.engine.lifecycle.refused:
            out += self._alerts_refused(wall_ms)
        return out

    def _alerts_refused(self, wall_ms: int) -> list[Effect]:
        """Alerts the lifecycle refused for ``max_open_alerts``: each counted, and said once
        a minute at most while it lasts."""
        lifecycle = self.engine.lifecycle
        refused = lifecycle.take_refused()
        count = sum(refused.values())
        self.refused_alerts += count
        self._alerts_refused_since_warning += count
        out: list[Effect] = [AlertRefused(rule, n) for rule, n in refused.items()]
        last = self._alerts_refusal_warned_ms
        latest = lifecycle.last_refused
        if count and latest and (last is None or wall_ms - last >= REFUSAL_WARN_EVERY_MS):
            rule, site, device_id = latest
            out.append(
                Log(
                    logging.WARNING,
                    "alerts refused: ALERTS_MAX_OPEN_ALERTS are open",
                    {
                        "max_open_alerts": self.settings.max_open_alerts,
                        "refused": self._alerts_refused_since_warning,
                        "rule": rule,
                        "site": site,
                        "device_id": device_id,
                    },
                )
            )
            self._alerts_refusal_warned_ms = wall_ms
            self._alerts_refused_since_warning = 0
        return out

    def _update_wanted(self, device_id: str) -> None:
        if any(a.state == "firing" for _, a in self.engine.dispatch_alerts(device_id)):
            self.desk.want(device_id)
        else:
            self.desk.unwant(device_id)

    # -- what a step of the desk means ---------------------------------------------------------
    def _desk(self, out: DeskOutput, wall_ms: int) -> list[Effect]:
        if not (out.requests or out.statuses or out.points or out.collected_bins or out.closed):
            return []  # most bin readings: nothing happened to any dispatch
        effects = self._planned(out.requests)
        effects += [
            Retain(self.topics.dispatch_status(s.dispatch_id), s.model_dump_json().encode())
            for s in out.statuses
        ]
        if out.points:
            effects.append(WritePoints(tuple(out.points)))
        effects += self._collections(out, self.now_ms(wall_ms))
        for dispatch_id in out.closed:
            effects.append(ClearRetained(self.topics.dispatch_record(dispatch_id)))
            effects.append(DispatchClosed(dispatch_id))
        return effects

    def _planned(self, requests: list[DispatchRequest]) -> list[Effect]:
        out: list[Effect] = []
        for request in requests:
            body = request.model_dump_json().encode()
            planned = DispatchStatus(
                dispatch_id=request.dispatch_id,
                state="planned",
                truck_id=request.truck_id,
                zone=request.zone,
                ts=request.created_at,
                message=request.reason,
            )
            out += [
                Publish(self.topics.dispatch_requests(), body),
                Retain(self.topics.dispatch_record(request.dispatch_id), body),
                Retain(
                    self.topics.dispatch_status(request.dispatch_id),
                    planned.model_dump_json().encode(),
                ),
                DispatchPlanned(request),
            ]
        return out

    def _collections(self, out: DeskOutput, now_ms: int) -> list[Effect]:
        """A collected bin: older readings are superseded, rules forget it, its dispatch
        alerts resolve and it no longer asks for a truck."""
        effects: list[Effect] = []
        for device_id, dispatch_id in out.collected_bins:
            device = self.registry.device(device_id)
            at = self.collected.at(device_id)
            self.engine.collected(
                device.site if device else "", device_id, now_ms if at is None else at
            )
            for key, _ in self.engine.dispatch_alerts(device_id):
                done = self.engine.resolve(key, now_ms, f"collected by dispatch {dispatch_id}")
                if done is not None:
                    effects += self._transitions([done], None)
            self.desk.unwant(device_id)
        return effects


def _fits(parse: Callable[[str], object], topic: str) -> bool:
    """True if ``topic`` has exactly the shape ``parse`` reads."""
    try:
        parse(topic)
    except TopicError:
        return False
    return True


def _status_problem(status: DispatchStatus, dispatch: OpenDispatch) -> str | None:
    request = dispatch.request
    if status.truck_id != request.truck_id:
        return f"truck {status.truck_id!r} does not drive dispatch {request.dispatch_id!r}"
    if status.zone is not None and status.zone != request.zone:
        return f"zone {status.zone!r} is not the dispatch's {request.zone!r}"
    if status.state not in _NEXT_STATES.get(dispatch.phase, frozenset()):
        return f"{dispatch.phase.value} -> {status.state} is no transition of a dispatch"
    return None
