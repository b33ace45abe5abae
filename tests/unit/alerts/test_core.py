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
from common.topics import TopicError, Topics
from services.alerts.core import (
    Accepted,
    AlertsCore,
    ClearRetained,
    CoreSettings,
    DispatchClosed,
    DispatchPlanned,
    Effect,
    Inbound,
    Log,
    Notify,
    Publish,
    Rejected,
    Retain,
    StateRestored,
    WritePoints,
)
from tests.unit.alerts.helpers import HOUR, MIN, T0, registry, rules

TOPICS = Topics("facility")
NONCE = "0123abcd"
KEY = ("bin_full", "ewaste", "bin-001")
BIN_FULL = """
rules:
  - name: bin_full
    type: threshold
    select: {kind: ewaste_bin}
    field: fill_pct
    when: ">= 90"
    clear: "< 60"
    dispatch: true
"""


def core(text: str = BIN_FULL) -> AlertsCore:
    settings = CoreSettings(opportunistic_pct=70, dispatch_timeout_ms=6 * HOUR)
    return AlertsCore(rules(text), registry(), TOPICS, settings, NONCE)


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
    assert c.receive(bin_msg("bin-001", T0, 95), T0) == []  # held
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
    point = of(WritePoints, out)[0].points[0]
    assert point[2]["state"] == "completed" and point[2]["collected_kg"] == (95 - 2) * 3


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
