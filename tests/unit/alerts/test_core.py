"""AlertsCore with plain calls: retained state first, then telemetry; a firing dispatch alert
becomes published and retained dispatch messages; a collection resolves the bin's alert and
clears the record; every effect is a value, every topic comes from ``Topics``."""

from __future__ import annotations

import json
import logging
from typing import TypeVar

import pytest

from common.messages import AlertEvent, DispatchStatus
from common.timestamps import ms_to_iso
from common.topics import TopicError
from services.alerts.core import (
    Accepted,
    AlertsCore,
    ClearRetained,
    CoreSettings,
    DispatchClosed,
    DispatchPlanned,
    Effect,
    Held,
    Inbound,
    Log,
    Notify,
    Publish,
    Rejected,
    Retain,
    StateRestored,
    WritePoints,
)
from tests.unit.alerts.helpers import (
    HOUR,
    MIN,
    NONCE,
    T0,
    TOPICS,
    alerts_core,
    bin_full_rules,
    registry,
)

KEY = ("bin_full", "ewaste", "bin-001")
BIN_FULL = bin_full_rules('clear: "< 60"', "dispatch: true")


def core(text: str = BIN_FULL) -> AlertsCore:
    return alerts_core(text, CoreSettings(opportunistic_pct=70, dispatch_timeout_ms=6 * HOUR))


def synced(text: str = BIN_FULL) -> AlertsCore:
    c = core(text)
    assert c.receive(sync(), T0) == [StateRestored(0, 0, 0)]
    return c


def sync(nonce: str = NONCE) -> Inbound:
    return Inbound(TOPICS.alerts_sync(), nonce.encode(), 0.0)


def bin_msg(device: str, ts_ms: int, fill: float, weight: float | None = None) -> Inbound:
    body = {"ts": ts_ms, "fill_pct": fill, "weight_kg": fill * 3 if weight is None else weight}
    topic = TOPICS.telemetry("ewaste", "ewaste_bin", device)
    return Inbound(topic, json.dumps(body).encode(), 1.5)


E = TypeVar("E")


def of(kind: type[E], effects: list[Effect]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def notified(effects: list[Effect]) -> list[str]:
    return [e.transition.event.state for e in of(Notify, effects)]


def test_telemetry_waits_for_the_sync_marker_then_is_judged() -> None:
    c = core()
    assert c.receive(bin_msg("bin-001", T0, 95), T0) == [
        Held()
    ]  # held: neither judged nor to be acknowledged yet
    assert c.receive(sync("someone-else"), T0) == []  # another instance's marker
    assert not c.synced
    out = c.receive(sync(), T0)
    assert out[0] == StateRestored(firing=0, open_dispatches=0, held_messages=1)
    assert notified(out) == ["firing"]
    assert of(Notify, out)[0].arrived == 1.5  # measured from the held message's arrival
    assert c.receive(sync(), T0) == []  # a second copy of the marker changes nothing


def test_sync_marker_and_timeout_path() -> None:
    c = core()
    assert c.sync_marker() == Publish("facility/alerts/_sync", NONCE.encode())
    c.receive(bin_msg("bin-001", T0, 95), T0)
    out = c.finish_restoring(T0)  # the marker never came back in time
    assert out[0] == StateRestored(0, 0, 1) and notified(out) == ["firing"]


def test_firing_dispatch_alert_publishes_and_retains_the_request_in_order() -> None:
    c = synced()
    out = c.receive(bin_msg("bin-001", T0, 95), T0 + 10 * MIN)
    assert [type(e) for e in out] == [
        Notify,
        Accepted,
        Publish,
        Retain,
        Retain,
        DispatchPlanned,
        WritePoints,
    ]
    request = of(DispatchPlanned, out)[0].request
    body = request.model_dump_json().encode()
    assert out[2] == Publish("facility/dispatch/requests", body)
    assert out[3] == Retain(f"facility/alerts/_dispatch/{request.dispatch_id}", body)
    planned = DispatchStatus.model_validate_json(of(Retain, out)[1].payload)
    assert of(Retain, out)[1].topic == f"facility/dispatch/{request.dispatch_id}/status"
    assert (planned.state, planned.ts) == ("planned", ms_to_iso(T0))
    assert of(WritePoints, out)[0].points[0][2]["state"] == "planned"
    assert out[1] == Accepted(watermark_ms=T0)
    assert c.open_dispatch_ids() == {request.dispatch_id}
    # Still full: no second firing and no second dispatch.
    again = c.receive(bin_msg("bin-001", T0 + MIN, 96), T0 + 10 * MIN)
    assert again == [Accepted(T0 + MIN)]


def test_completed_status_resolves_the_alert_and_clears_the_record() -> None:
    c = synced()
    first = c.receive(bin_msg("bin-001", T0, 95), T0)
    request = of(DispatchPlanned, first)[0].request
    status = DispatchStatus(
        dispatch_id=request.dispatch_id,
        state="completed",
        truck_id=request.truck_id,
        ts=ms_to_iso(T0 + HOUR),
    )
    topic = TOPICS.dispatch_status(request.dispatch_id)
    out = c.receive(Inbound(topic, status.model_dump_json().encode(), 2.0), T0 + HOUR)
    assert [type(e) for e in out] == [WritePoints, Notify, ClearRetained, DispatchClosed]
    resolved = of(Notify, out)[0]
    assert resolved.arrived is None  # caused by the collection, not a reading's arrival
    assert resolved.transition.event.state == "resolved"
    assert f"collected by dispatch {request.dispatch_id}" in resolved.transition.event.message
    assert out[2] == ClearRetained(f"facility/alerts/_dispatch/{request.dispatch_id}")
    assert out[3] == DispatchClosed(request.dispatch_id)
    assert c.alert(KEY) is None and c.open_dispatch_ids() == set()
    # A pre-collection reading still in flight is history for the engine and the desk alike.
    late = c.receive(bin_msg("bin-001", T0 + HOUR - MIN, 97), T0 + HOUR)
    assert late == [Accepted(T0 + HOUR - MIN)]
    assert c.collected.at("bin-001") == T0 + HOUR


def test_weight_drop_is_a_collection_too() -> None:
    c = synced()
    request = of(DispatchPlanned, c.receive(bin_msg("bin-001", T0, 95), T0))[0].request
    out = c.receive(bin_msg("bin-001", T0 + HOUR, 2), T0 + HOUR)
    assert notified(out) == ["resolved"]
    assert of(ClearRetained, out) == [ClearRetained(TOPICS.dispatch_record(request.dispatch_id))]
    collection, point = of(WritePoints, out)[0].points
    assert point[2]["state"] == "completed" and point[2]["collected_kg"] == (95 - 2) * 3
    assert collection[0] == "collection" and collection[3] == T0 + HOUR  # the reading's time
    assert collection[2] == {
        "kg": (95 - 2) * 3,
        "weight_estimated": False,
        "dispatch_id": request.dispatch_id,
    }


def test_tick_times_out_a_dispatch_and_plans_again() -> None:
    c = synced()
    first = of(DispatchPlanned, c.receive(bin_msg("bin-001", T0, 95), T0))[0].request
    assert c.tick(T0 + 5 * HOUR) == []  # not live: time is the watermark, still T0
    c.receive(bin_msg("bin-001", T0 + 6 * HOUR, 95), T0 + 6 * HOUR)  # watermark moves
    out = c.tick(T0 + 6 * HOUR)
    cancelled = [
        DispatchStatus.model_validate_json(e.payload)
        for e in of(Retain, out)
        if e.topic == TOPICS.dispatch_status(first.dispatch_id)
    ]
    assert [s.state for s in cancelled] == ["cancelled"]
    assert ClearRetained(TOPICS.dispatch_record(first.dispatch_id)) in out
    assert DispatchClosed(first.dispatch_id) in out
    again = of(DispatchPlanned, out)
    assert len(again) == 1 and again[0].request.dispatch_id != first.dispatch_id


def test_restored_alert_and_dispatch_are_not_fired_or_planned_again() -> None:
    c = core()
    fired = synced()
    events = of(Notify, fired.receive(bin_msg("bin-001", T0, 95), T0))
    request = next(iter(fired.open_dispatch_ids()))
    record = fired.desk.open[request].request.model_dump_json().encode()
    event = events[0].transition.event
    active = TOPICS.alert_active(*KEY)
    payload = event.model_dump_json(exclude_none=True).encode()
    assert c.receive(Inbound(active, payload, 0.0), T0) == []
    assert c.receive(Inbound(TOPICS.dispatch_record(request), record, 0.0), T0) == []
    assert c.receive(sync(), T0) == [StateRestored(1, 1, 0)]
    assert c.alert(KEY) is not None
    assert c.receive(bin_msg("bin-001", T0 + MIN, 96), T0 + MIN) == [Accepted(T0 + MIN)]
    # Retained copies seen after the restore (our own publishes) are not state.
    assert c.receive(Inbound(active, payload, 0.0), T0) == []


def test_retained_alert_of_a_removed_rule_is_cleared() -> None:
    c = core()
    event = AlertEvent(
        rule="gone",
        severity="warning",
        site="ewaste",
        device_id="bin-001",
        state="firing",
        message="old",
        ts=ms_to_iso(T0),
    )
    topic = TOPICS.alert_active("gone", "ewaste", "bin-001")
    out = c.receive(Inbound(topic, event.model_dump_json().encode(), 0.0), T0)
    assert out[0] == ClearRetained("facility/alerts/active/gone/ewaste/bin-001")
    assert isinstance(out[1], Log) and out[1].level == logging.INFO


def test_unreadable_retained_state_is_logged_and_ignored() -> None:
    c = core()
    bad_alert = Inbound("facility/alerts/active/bin_full/ewaste", b"{}", 0.0)
    bad_record = Inbound(TOPICS.dispatch_record("d1"), b"not json", 0.0)
    for item in (bad_alert, bad_record):
        out = c.receive(item, T0)
        assert len(out) == 1 and isinstance(out[0], Log) and out[0].level == logging.WARNING
    assert c.receive(sync(), T0) == [StateRestored(0, 0, 0)]


def test_invalid_telemetry_is_rejected_not_judged() -> None:
    c = synced()
    topic = TOPICS.telemetry("ewaste", "ewaste_bin", "bin-001")
    out = c.receive(Inbound(topic, b"{not json", 0.0), T0)
    assert len(out) == 1 and isinstance(out[0], Rejected) and out[0].topic == topic
    assert c.watermark_ms == 0


def test_replayed_status_is_stamped_with_the_streams_time() -> None:
    c = synced(BIN_FULL.replace("rules:\n", "rules:\n" + OFFLINE))
    c.receive(bin_msg("bin-001", T0, 10), T0 + 30 * 24 * HOUR)  # a month-old replay: not live
    topic = TOPICS.status("ewaste", "ewaste_bin", "bin-001")
    out = c.receive(Inbound(topic, b"offline", 0.0), T0 + 30 * 24 * HOUR)
    assert [e.transition.event.ts for e in of(Notify, out)] == [ms_to_iso(T0)]
    assert not c.live


OFFLINE = """  - name: offline
    type: absence
    select: {kind: ewaste_bin}
    after: 1h
"""


def test_alerts_internal_topics_round_trip() -> None:
    assert TOPICS.alerts_sync() == "facility/alerts/_sync"
    assert TOPICS.dispatch_record("d1-x") == "facility/alerts/_dispatch/d1-x"
    assert TOPICS.all_dispatch_records() == "facility/alerts/_dispatch/+"
    assert TOPICS.parse_dispatch_record("facility/alerts/_dispatch/d1-x") == "d1-x"
    assert TOPICS.is_dispatch_record("facility/alerts/_dispatch/whatever/else")
    assert TOPICS.is_active_alert("facility/alerts/active/a/b/c")
    assert not TOPICS.is_active_alert("facility/alerts/a/b/c")
    assert TOPICS.is_dispatch("facility/dispatch/d1/status")
    with pytest.raises(TopicError):
        TOPICS.dispatch_record("Bad/Id")
    with pytest.raises(TopicError):
        TOPICS.parse_dispatch_record("facility/alerts/_sync")


# -- forged state: a device's credentials can write P/+/+/{own id}/telemetry|status ----------
FAR_FUTURE = "2999-01-01T00:00:00Z"


def _planned(c: AlertsCore) -> DispatchPlanned:
    return of(DispatchPlanned, c.receive(bin_msg("bin-001", T0, 95), T0))[0]


def _record(**changes: object) -> bytes:
    fired = synced()
    request = _planned(fired).request
    return request.model_copy(update=changes).model_dump_json().encode()


def test_a_device_topic_under_alerts_dispatch_is_no_dispatch_record() -> None:
    c = core()
    forged = "facility/alerts/_dispatch/bin-001/telemetry"
    body = _record(created_at=FAR_FUTURE)
    out = c.receive(Inbound(forged, body, 0.0, retained=True), T0)
    assert [type(e) for e in out] == [Log, ClearRetained]
    assert of(Log, out)[0].code == "bad_dispatch_record"
    assert out[1] == ClearRetained(forged)
    assert c.receive(Inbound(forged, b"", 0.0), T0) == []  # our own clear coming back
    assert c.receive(sync(), T0) == [StateRestored(0, 0, 0)]
    assert c.open_dispatch_ids() == set()
    assert _planned(c).request.stops[0].device_id == "bin-001"  # the full bin gets a truck


def test_a_forged_completed_on_a_device_shaped_dispatch_topic_closes_nothing() -> None:
    c = synced()
    request = _planned(c).request
    done = DispatchStatus(
        dispatch_id=request.dispatch_id, state="completed", truck_id=request.truck_id
    )
    forged = Inbound("facility/dispatch/x/bin-001/status", done.model_dump_json().encode(), 0.0)
    out = c.receive(forged, T0 + HOUR)
    assert [type(e) for e in out] == [Rejected]
    assert of(Rejected, out)[0].rejection.code == "service_topic"
    assert c.open_dispatch_ids() == {request.dispatch_id}
    alert = c.alert(KEY)
    assert alert is not None and alert.state == "firing"


def test_a_dispatch_status_must_fit_its_topic_its_truck_and_its_dispatch() -> None:
    c = synced()
    request = _planned(c).request
    topic = TOPICS.dispatch_status(request.dispatch_id)
    other_truck = next(t.id for t in registry().trucks if t.id != request.truck_id)
    bad: list[tuple[str, dict[str, object]]] = [
        (topic, {"truck_id": other_truck}),
        (topic, {"truck_id": None}),
        (topic, {"zone": "soha" if request.zone != "soha" else "haan"}),
        (TOPICS.dispatch_status("d-other"), {}),  # names another dispatch than its topic
    ]
    for where, change in bad:
        status = DispatchStatus(
            dispatch_id=request.dispatch_id,
            state="completed",
            truck_id=request.truck_id,
            zone=request.zone,
        ).model_copy(update=change)
        out = c.receive(Inbound(where, status.model_dump_json().encode(), 0.0), T0 + HOUR)
        assert [(type(e), getattr(e, "code", None)) for e in out] == [
            (Log, "bad_dispatch_status")
        ], change
    assert c.open_dispatch_ids() == {request.dispatch_id}
    assert c.alert(KEY) is not None
    # The real truck, on the real topic: en route, then done.
    for state in ("en_route", "completed"):
        status = DispatchStatus(
            dispatch_id=request.dispatch_id, state=state, truck_id=request.truck_id
        )
        c.receive(Inbound(topic, status.model_dump_json().encode(), 0.0), T0 + HOUR)
    assert c.open_dispatch_ids() == set() and c.alert(KEY) is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"created_at": FAR_FUTURE}, "future"),
        ({"truck_id": "truck-99"}, "unknown truck"),
        ({"zone": "atlantis"}, "unknown zone"),
        ({"dispatch_id": "d-someone-else"}, "another dispatch"),
        ({"stops": []}, "without stops"),
        ({"truck_id": "Bad/Id"}, "invalid truck_id"),
    ],
)
def test_an_invalid_dispatch_record_is_logged_counted_and_cleared(
    change: dict[str, object], why: str
) -> None:
    fired = synced()
    request = _planned(fired).request
    topic = TOPICS.dispatch_record(request.dispatch_id)
    body = request.model_copy(update=change).model_dump_json().encode()
    c = core()
    out = c.receive(Inbound(topic, body, 0.0, retained=True), T0)
    assert [type(e) for e in out] == [Log, ClearRetained]
    log_line = of(Log, out)[0]
    assert log_line.code == "bad_dispatch_record" and log_line.level == logging.WARNING
    assert why in str(log_line.extra["error"])
    assert out[1] == ClearRetained(topic)
    assert c.receive(sync(), T0) == [StateRestored(0, 0, 0)]


def test_a_record_whose_stop_is_no_bin_of_its_zone_is_refused() -> None:
    fired = synced()
    request = _planned(fired).request
    reg = registry()
    elsewhere = next(d for d in reg.devices if reg.zone_of(d.id) not in (None, request.zone))
    stop = request.stops[0].model_copy(update={"device_id": elsewhere.id})
    body = request.model_copy(update={"stops": [stop]}).model_dump_json().encode()
    c = core()
    out = c.receive(Inbound(TOPICS.dispatch_record(request.dispatch_id), body, 0.0), T0)
    assert [(type(e), getattr(e, "code", None)) for e in out] == [(Log, "bad_dispatch_record")]
    assert c.open_dispatch_ids() == set()


def _firing_event(**changes: object) -> bytes:
    fired = synced()
    event = of(Notify, fired.receive(bin_msg("bin-001", T0, 95), T0))[0].transition.event
    return event.model_copy(update=changes).model_dump_json().encode()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"ts": FAR_FUTURE}, "future"),
        ({"started_at": FAR_FUTURE}, "future"),
        ({"device_id": "bin-002"}, "another alert"),
        ({"kind": "energy_meter"}, "is not a"),
    ],
)
def test_an_invalid_retained_alert_is_logged_counted_and_cleared(
    change: dict[str, object], why: str
) -> None:
    c = core()
    topic = TOPICS.alert_active(*KEY)
    out = c.receive(Inbound(topic, _firing_event(**change), 0.0, retained=True), T0)
    assert [type(e) for e in out] == [Log, ClearRetained]
    assert of(Log, out)[0].code == "bad_alert_record"
    assert why in str(of(Log, out)[0].extra["error"])
    assert c.receive(sync(), T0) == [StateRestored(0, 0, 0)]
    assert c.alert(KEY) is None


def test_look_alike_alert_events_from_a_device_are_not_state() -> None:
    c = core()
    event = _firing_event()
    forged = [
        "facility/alerts/active/bin-001/telemetry",
        "facility/alerts/bin_full/bin-001/status",
        "facility/alerts/_sync/bin-001/status",
    ]
    for topic in forged:
        out = c.receive(Inbound(topic, event, 0.0, retained=True), T0)
        assert ClearRetained(topic) in out, topic
        assert of(Notify, out) == []
    assert c.receive(sync(), T0) == [StateRestored(0, 0, 0)]
    assert c.alert(KEY) is None
    for topic in forged:  # live, after the restore: counted, never a reading or state
        out = c.receive(Inbound(topic, event, 0.0), T0)
        assert [(type(e), e.rejection.code) for e in of(Rejected, out)] == [
            (Rejected, "service_topic")
        ]
        assert of(ClearRetained, out) == []
    assert c.firing_count() == 0 and c.watermark_ms == 0


def test_deadletter_and_dispatch_levels_are_never_device_readings() -> None:
    c = synced()
    body = json.dumps({"ts": T0, "fill_pct": 95, "weight_kg": 300}).encode()
    for topic in (
        "facility/deadletter/x/bin-001/telemetry",
        "facility/dispatch/ewaste_bin/bin-001/telemetry",
    ):
        out = c.receive(Inbound(topic, body, 0.0, retained=True), T0)
        assert [(type(e), getattr(e, "topic", None)) for e in out] == [(Rejected, topic)]
    assert c.watermark_ms == 0


def test_unknown_devices_are_bounded_and_registry_ones_always_judged() -> None:
    settings = CoreSettings(opportunistic_pct=70, unknown_devices="accept", unknown_devices_max=3)
    c = alerts_core(BIN_FULL, settings)
    c.receive(sync(), T0)
    body = json.dumps({"ts": T0, "fill_pct": 95, "weight_kg": 300}).encode()

    def fake(site: str, at: int = T0) -> list[Effect]:
        return c.receive(Inbound(f"facility/{site}/ewaste_bin/bin-009/telemetry", body, 0.0), at)

    for n in range(3):
        assert of(Accepted, fake(f"fake{n}"))
    refused = fake("fake3")
    assert [e.rejection.code for e in of(Rejected, refused)] == ["unknown_device_limit"]
    assert len(of(Log, refused)) == 1  # one warning ...
    assert of(Log, fake("fake4", T0 + MIN - 1)) == []  # ... a minute at most
    again = of(Log, fake("fake5", T0 + MIN))
    assert len(again) == 1 and again[0].extra["refused"] == 2
    assert c.unknown_devices_seen() == 3 and c.refused_readings == 3
    assert of(Accepted, fake("fake0"))  # a tracked series stays judged
    # A device of the registry is never crowded out by made-up ones.
    assert notified(c.receive(bin_msg("bin-001", T0, 95), T0)) == ["firing"]
    assert c.unknown_devices_seen() == 3


def test_retained_alerts_count_towards_the_bound() -> None:
    settings = CoreSettings(unknown_devices="accept", unknown_devices_max=1)
    c = alerts_core(BIN_FULL, settings)
    unknown = AlertEvent.model_validate_json(_firing_event()).model_copy(
        update={"site": "fake", "device_id": "ghost"}
    )
    for n in range(2):
        event = unknown.model_copy(update={"device_id": f"ghost{n}"})
        topic = TOPICS.alert_active("bin_full", "fake", f"ghost{n}")
        out = c.receive(Inbound(topic, event.model_dump_json().encode(), 0.0, True), T0)
        if n == 0:
            assert out == []
        else:
            assert [type(e) for e in out] == [Log, ClearRetained]
            assert of(Log, out)[0].code == "unknown_device_limit"
    assert c.receive(sync(), T0) == [StateRestored(1, 0, 0)]


def test_a_retained_alert_of_a_device_the_registry_refuses_is_cleared() -> None:
    c = alerts_core(BIN_FULL, CoreSettings(unknown_devices="reject"))
    event = AlertEvent.model_validate_json(_firing_event()).model_copy(
        update={"site": "fake", "device_id": "ghost"}
    )
    topic = TOPICS.alert_active("bin_full", "fake", "ghost")
    out = c.receive(Inbound(topic, event.model_dump_json().encode(), 0.0, True), T0)
    assert [(type(e), getattr(e, "code", None)) for e in out] == [
        (Log, "unknown_device"),
        (ClearRetained, None),
    ]
    assert c.receive(sync(), T0) == [StateRestored(0, 0, 0)]


def test_service_levels_and_exact_dispatch_shapes() -> None:
    assert TOPICS.service_namespace("facility/alerts/_dispatch/bin-001/telemetry") == "alerts"
    assert TOPICS.service_namespace("facility/dispatch/x/bin-001/status") == "dispatch"
    assert TOPICS.service_namespace("facility/deadletter/ingest") == "deadletter"
    assert TOPICS.service_namespace("facility/ewaste/ewaste_bin/bin-001/status") is None
    assert TOPICS.service_namespace("other/alerts/x") is None
    for bad in ("facility/dispatch/x/bin-001/status", "facility/dispatch/requests/status"):
        with pytest.raises(TopicError):
            TOPICS.parse_dispatch_status(bad)
    with pytest.raises(TopicError):
        TOPICS.parse_dispatch_record("facility/alerts/_dispatch/bin-001/telemetry")
    with pytest.raises(TopicError):  # a device topic may never sit under a service's level
        TOPICS.parse_device_topic("facility/alerts/_dispatch/bin-001/telemetry")


def _restored_offline(c: AlertsCore, device: str = "bin-001") -> None:
    """Restore a firing ``offline`` alert of ``device`` (retained by an earlier run), then sync."""
    event = AlertEvent(
        rule="offline",
        severity="warning",
        site="ewaste",
        device_id=device,
        kind="ewaste_bin",
        state="firing",
        message="device reported offline (status)",
        ts=ms_to_iso(T0),
        started_at=ms_to_iso(T0),
    )
    active = TOPICS.alert_active("offline", "ewaste", device)
    assert c.receive(Inbound(active, event.model_dump_json().encode(), 0.0, True), T0) == []
    assert c.receive(sync(), T0)[0] == StateRestored(1, 0, 0)


def test_a_restored_offline_alert_resolves_when_the_device_says_online() -> None:
    c = core("rules:\n" + OFFLINE)
    _restored_offline(c)
    status = Inbound(TOPICS.status("ewaste", "ewaste_bin", "bin-001"), b"online", 0.0, True)
    out = c.receive(status, T0 + MIN)
    assert notified(out) == ["resolved"]
    assert c.alert(("offline", "ewaste", "bin-001")) is None


def test_a_restored_offline_alert_resolves_at_the_devices_next_reading() -> None:
    c = core("rules:\n" + OFFLINE)
    _restored_offline(c)
    out = c.receive(bin_msg("bin-001", T0 + MIN, 10), T0 + MIN)
    assert notified(out) == ["resolved"]
    assert of(Notify, out)[0].transition.event.message == "device reports again"


def test_a_restored_offline_alert_stays_firing_while_the_device_stays_offline() -> None:
    c = core("rules:\n" + OFFLINE)
    _restored_offline(c)
    status = Inbound(TOPICS.status("ewaste", "ewaste_bin", "bin-001"), b"offline", 0.0, True)
    assert notified(c.receive(status, T0 + MIN)) == []  # no second firing either
    assert notified(c.receive(bin_msg("bin-002", T0 + 2 * HOUR, 10), T0 + 2 * HOUR)) == []
    assert c.alert(("offline", "ewaste", "bin-001")) is not None
