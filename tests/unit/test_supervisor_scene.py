"""`make run`'s city view: the scene fed with the messages the programs publish, as rendered."""

from __future__ import annotations

import json

from common.messages import AlertEvent, DispatchRequest, DispatchStatus, DispatchStop
from common.topics import Topics
from supervisor.child import ChildRow, ChildState
from supervisor.scene import Scene
from supervisor.view import Figures, as_text, render

TOPICS = Topics("facility")
TS = "2026-06-01T03:00:00+00:00"


def reading(scene: Scene, site: str, kind: str, device_id: str, **fields: object) -> None:
    scene.feed(TOPICS.telemetry(site, kind, device_id), json.dumps({"ts": TS, **fields}).encode())


def alert(rule: str, device_id: str, state: str, value: float) -> tuple[str, bytes]:
    event = AlertEvent(
        rule=rule,
        severity="warning",
        site="ewaste",
        device_id=device_id,
        state=state,  # type: ignore[arg-type]
        value=value,
        threshold=90.0,
        message=f"{device_id} {rule}",
        ts=TS,
    )
    return TOPICS.alert_active(rule, "ewaste", device_id), event.model_dump_json().encode()


def request(dispatch_id: str, truck_id: str, *bins: str) -> bytes:
    stops = [DispatchStop(device_id=b, latitude=37.47, longitude=126.86) for b in bins]
    return (
        DispatchRequest(
            dispatch_id=dispatch_id,
            truck_id=truck_id,
            zone="cheolsan",
            stops=stops,
            est_load_kg=410.0,
            route_km=7.5,
        )
        .model_dump_json()
        .encode()
    )


def status(dispatch_id: str, state: str, **extra: object) -> tuple[str, bytes]:
    body = DispatchStatus(dispatch_id=dispatch_id, state=state, truck_id="truck-1", **extra)  # type: ignore[arg-type]
    return TOPICS.dispatch_status(dispatch_id), body.model_dump_json().encode()


def busy_scene() -> Scene:
    scene = Scene(TOPICS)
    reading(scene, "ewaste", "ewaste_bin", "bin-004", fill_pct=93.0, weight_kg=221.5)
    reading(scene, "ewaste", "ewaste_bin", "bin-006", fill_pct=81.0, weight_kg=190.0)
    reading(scene, "ewaste", "ewaste_bin", "bin-007", fill_pct=12.0, weight_kg=20.0)
    scene.feed(*alert("bin_full", "bin-004", "firing", 93.0))
    scene.feed(TOPICS.dispatch_requests(), request("d-1", "truck-1", "bin-004", "bin-006"))
    scene.feed(TOPICS.dispatch_requests(), request("d-2", "truck-2", "bin-001"))
    scene.feed(*status("d-2", "en_route"))
    scene.feed(TOPICS.dispatch_requests(), request("d-3", "truck-3", "bin-009"))
    scene.feed(*status("d-3", "completed", collected_kg=388.4, stops_done=["bin-009"]))
    energy = {"pv_power_w": 4200.0, "load_power_w": 2600.0, "grid_power_w": -1600.0}
    reading(scene, "nzc", "energy_meter", "nzc-meter-1", battery_soc_pct=64.0, pv_energy_wh=1000.0,
            load_energy_wh=800.0, **energy)  # fmt: skip
    reading(scene, "nzc", "energy_meter", "nzc-meter-1", battery_soc_pct=65.0, pv_energy_wh=4000.0,
            load_energy_wh=2300.0, **energy)  # fmt: skip
    gate = ("uac", "visitor_counter")
    reading(scene, *gate, "uac-gate-1", entries_total=120, exits_total=85, occupancy=35)
    reading(scene, *gate, "uac-gate-1", entries_total=127, exits_total=87, occupancy=40)
    reading(scene, *gate, "uac-gate-2", entries_total=30, exits_total=25, occupancy=5)
    # The east gate restarts: its counter begins again at 0, and the 3 since then are new.
    reading(scene, *gate, "uac-gate-2", entries_total=3, exits_total=1, occupancy=2)
    return scene


def screen(scene: Scene) -> str:
    rows = [ChildRow("alerts", ChildState.RUNNING, 42, 0, "")]
    return as_text(render(["broker x"], rows, Figures(), [], scene), width=140)


def test_view_shows_bins_near_full_alerts_dispatch_states_and_facility_figures() -> None:
    text = screen(busy_scene())
    assert "bins near full (>= 80 %): 2" in text
    bin_lines = [line for line in text.splitlines() if "bin-004" in line and "kg" in line]
    assert any("93 %" in line and "221.5 kg" in line for line in bin_lines), text
    assert "bin-007" not in text  # 12 % is not near full
    assert "alerts firing: 1" in text
    assert any(
        "bin_full" in line and "bin-004" in line and "93" in line for line in text.splitlines()
    )
    assert "dispatches: planned 1 -> en_route 1 -> completed 1 -> cancelled 0" in text
    assert any(
        "d-3" in line and "completed" in line and "388.4 kg" in line for line in text.splitlines()
    )
    assert any(
        "d-1" in line and "planned" in line and "410 kg" in line for line in text.splitlines()
    )
    assert "PV 4.2 kW  load 2.6 kW  grid -1.6 kW  battery 65 %  net +1.5 kWh since start" in text
    assert "42 people inside  10 entries since start" in text


def test_resolved_or_cleared_alerts_leave_the_view() -> None:
    scene = busy_scene()
    scene.feed(TOPICS.alert_active("bin_full", "ewaste", "bin-004"), b"")
    assert scene.firing() == []
    scene.feed(*alert("bin_full", "bin-006", "firing", 91.0))
    scene.feed(*alert("bin_full", "bin-006", "resolved", 10.0))
    assert "alerts firing: 0" in screen(scene)


def test_bad_messages_are_counted_and_change_nothing() -> None:
    scene = busy_scene()
    before = scene.as_dict()
    scene.feed(TOPICS.telemetry("ewaste", "ewaste_bin", "bin-004"), b"{not json")
    scene.feed(
        TOPICS.telemetry("ewaste", "ewaste_bin", "bin-004"),
        b'{"ts": 1, "fill_pct": "x", "weight_kg": 1}',
    )
    scene.feed(TOPICS.dispatch_requests(), b'{"dispatch_id": 3}')
    scene.feed("facility/alerts/active/too/short", b"{}")
    scene.feed("facility/dispatch/d-9/status", b"[]")
    after = scene.as_dict()
    assert after["unreadable"] == before["unreadable"] + 5
    assert {k: v for k, v in after.items() if k not in ("messages", "unreadable")} == {
        k: v for k, v in before.items() if k not in ("messages", "unreadable")
    }


def test_status_before_its_request_still_shows_the_dispatch() -> None:
    scene = Scene(TOPICS)
    scene.feed(*status("d-7", "en_route"))
    scene.feed(TOPICS.dispatch_requests(), request("d-7", "truck-1", "bin-001", "bin-002"))
    [dispatch] = scene.recent_dispatches()
    assert (dispatch.state, dispatch.stops) == ("en_route", 2)
