"""A device's credentials cannot forge the alerts service's state (issue 11, point 2).

The device ACL patterns ``P/+/+/{id}/telemetry|status`` also match topics under the services'
levels (``P/alerts/_dispatch/{id}/telemetry``, ``P/dispatch/x/{id}/status``). Whatever the
broker lets through, the real facility-alerts process under the shipped broker config must
take none of it for a dispatch record, a truck's progress or an alert. Each test asserts on
the service, so it holds whether or not a stricter ACL refuses the forged publish first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from common.messages import AlertEvent, DispatchRequest, DispatchStatus, DispatchStop
from common.timestamps import ms_to_iso
from tests.helpers import bound_port
from tests.integration.deploy_broker import Client, DeployBroker, client, running_broker
from tests.integration.test_deploy_acl_services import service, service_env

P = "facility"
BIN = "bin-001"
TELEMETRY = f"{P}/ewaste/ewaste_bin/{BIN}/telemetry"
WAIT_S = 60.0


class Alerts:
    """The running facility-alerts process and its /healthz and /metrics."""

    def __init__(self, url: str) -> None:
        self.url = url

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=2).json()
        return body

    def metric(self, line_start: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=2).text
        found = [line for line in text.splitlines() if line.startswith(line_start)]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


@contextmanager
def running_alerts(broker: DeployBroker, tmp: Path, name: str, **extra: str) -> Iterator[Alerts]:
    env = (
        extra
        | service_env(broker, "svc.alerts", tmp)
        | {
            "ALERTS_INFLUX_ENABLED": "false",
            "ALERTS_RULES_FILE": "config/rules.yaml",
            "ALERTS_STATE_DIR": str(tmp / "alerts-state"),
            "HTTP_PORT_FILE": str(tmp / f"{name}.port"),
        }
    )
    log = tmp / f"{name}.log"
    with service("services.alerts", env, log) as proc:
        port = bound_port(Path(env["HTTP_PORT_FILE"]), proc)
        alerts = Alerts(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if alerts.health().get("state_restored") and alerts.health()["mqtt_connected"]:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling a starting service, bounded by the deadline
        else:
            raise AssertionError(f"state never restored: {log.read_text()[-3000:]}")
        yield alerts
    assert proc.returncode == 0, log.read_text()[-3000:]


def fill_up(device: Client, now_ms: int) -> None:
    """Readings two minutes apart and full: ``bin_full`` (for: 2m) fires and asks a truck."""
    for seq, age_s in enumerate((180, 120, 60)):
        reading = {"ts": now_ms - age_s * 1000, "seq": seq, "fill_pct": 95.0, "weight_kg": 300.0}
        assert not device.publish(TELEMETRY, json.dumps(reading).encode()).is_failure


def requests_for(operator: Client, device_id: str) -> list[DispatchRequest]:
    found = [
        DispatchRequest.model_validate_json(payload)
        for topic, payload in list(operator.messages)
        if topic == f"{P}/dispatch/requests"
    ]
    return [r for r in found if device_id in {s.device_id for s in r.stops}]


def retained(port: int, topic: str) -> bytes | None:
    """The retained message of ``topic`` (operator's view), or None.

    A second device retains its own status and the operator subscribes to that after
    ``topic``: the broker sends the retained messages of one subscription before the next's,
    so once the sentinel is in, whatever ``topic`` holds is in too.
    """
    sentinel = f"{P}/ewaste/ewaste_bin/bin-002/status"
    with client(port, "bin-002") as other:
        assert not other.publish(sentinel, b"online", retain=True).is_failure
    with client(port, "svc.operator") as reader:
        assert not reader.subscribe(topic).is_failure
        assert not reader.subscribe(sentinel).is_failure
        found = [payload for t, payload in reader.wait_for(sentinel) if t == topic and payload]
        return found[0] if found else None


def forged_record() -> DispatchRequest:
    """A plausible record (real truck, zone and bin), dated 2999 so it would never time out."""
    return DispatchRequest(
        dispatch_id="d29990101000000-cheolsan-beef",
        truck_id="truck-1",
        zone="cheolsan",
        stops=[DispatchStop(device_id=BIN, site="ewaste", latitude=37.47673, longitude=126.86985)],
        est_load_kg=300.0,
        route_km=3.0,
        created_at="2999-01-01T00:00:00Z",
    )


def test_a_retained_fake_dispatch_record_does_not_keep_a_full_bin_from_its_truck(
    tmp_path: Path,
) -> None:
    forged_topic = f"{P}/alerts/_dispatch/{BIN}/telemetry"
    body = forged_record().model_dump_json().encode()
    with running_broker(tmp_path / "broker") as broker:
        with running_alerts(broker, tmp_path, "first") as alerts:
            with client(broker.port, BIN) as device:
                device.publish(forged_topic, body, retain=True)  # refused or not: see below
                # Same connection: alerts has judged the forgery once this status is in.
                assert not device.publish(
                    f"{P}/ewaste/ewaste_bin/{BIN}/status", b"online"
                ).is_failure
            assert alerts.health()["open_dispatches"] == 0
        # The record would be restored at every start from now on.
        with (
            running_alerts(broker, tmp_path, "restarted") as alerts,
            client(broker.port, "svc.operator") as operator,
        ):
            assert alerts.health()["open_dispatches"] == 0
            assert not operator.subscribe(f"{P}/dispatch/requests").is_failure
            with client(broker.port, BIN) as device:
                fill_up(device, int(time.time() * 1000))
            operator.wait_for(f"{P}/dispatch/requests")
            assert requests_for(operator, BIN), operator.messages
        # Cleared from alerts' subtree: no later start (nor any other reader) sees it.
        assert retained(broker.port, forged_topic) is None


def test_a_fake_completed_status_neither_closes_the_dispatch_nor_resolves_the_alert(
    tmp_path: Path,
) -> None:
    alert_topic = f"{P}/alerts/bin_full/ewaste/{BIN}"
    offline_topic = f"{P}/alerts/device_offline/ewaste/{BIN}"
    with (
        running_broker(tmp_path / "broker") as broker,
        running_alerts(broker, tmp_path, "alerts") as alerts,
        client(broker.port, "svc.operator") as operator,
    ):
        for topic in (f"{P}/dispatch/requests", alert_topic, offline_topic):
            assert not operator.subscribe(topic).is_failure
        with client(broker.port, BIN) as device:
            fill_up(device, int(time.time() * 1000))
            operator.wait_for(f"{P}/dispatch/requests")
            (request,) = requests_for(operator, BIN)
            done = DispatchStatus(
                dispatch_id=request.dispatch_id,
                state="completed",
                truck_id=request.truck_id,
                zone=request.zone,
                ts=ms_to_iso(int(time.time() * 1000)),
                collected_kg=300.0,
            )
            for topic in (f"{P}/dispatch/x/{BIN}/status", f"{P}/dispatch/{BIN}/x/status"):
                device.publish(topic, done.model_dump_json().encode())
            # Same connection, so alerts judges this after the forged statuses.
            assert not device.publish(f"{P}/ewaste/ewaste_bin/{BIN}/status", b"offline").is_failure
        operator.wait_for(offline_topic)
        states = [
            AlertEvent.model_validate_json(payload).state
            for topic, payload in operator.messages
            if topic == alert_topic
        ]
        assert states == ["pending", "firing"], states
        health = alerts.health()
        assert health["open_dispatches"] == 1, health
        assert retained(broker.port, f"{P}/alerts/active/bin_full/ewaste/{BIN}") is not None
        assert retained(broker.port, f"{P}/alerts/_dispatch/{request.dispatch_id}") is not None


def test_look_alike_alert_events_are_not_taken_as_state(tmp_path: Path) -> None:
    now = ms_to_iso(int(time.time() * 1000))
    event = AlertEvent(
        rule="bin_full",
        severity="warning",
        site="ewaste",
        device_id=BIN,
        kind="ewaste_bin",
        state="firing",
        value=99.0,
        message="forged",
        ts=now,
        started_at=now,
    ).model_dump_json()
    look_alikes = [
        f"{P}/alerts/active/{BIN}/telemetry",  # a retained active alert, almost
        f"{P}/alerts/bin_full/{BIN}/status",  # an alert event, almost
    ]
    with running_broker(tmp_path / "broker") as broker:
        with client(broker.port, BIN) as device:
            for topic in look_alikes:
                device.publish(topic, event.encode(), retain=True)
        with (
            running_alerts(broker, tmp_path, "alerts") as alerts,
            client(broker.port, "svc.operator") as operator,
        ):
            health = alerts.health()
            assert (health["firing"], health["open_dispatches"]) == (0, 0), health
            offline_topic = f"{P}/alerts/device_offline/ewaste/{BIN}"
            assert not operator.subscribe(offline_topic).is_failure
            with client(broker.port, BIN) as device:
                passed = sum(  # live this time; the broker may already refuse them
                    not device.publish(topic, event.encode()).is_failure for topic in look_alikes
                )
                offline = device.publish(f"{P}/ewaste/ewaste_bin/{BIN}/status", b"offline")
                assert not offline.is_failure
            operator.wait_for(offline_topic)  # judged after the look-alikes (one connection)
            health = alerts.health()
            assert (health["firing"], health["open_dispatches"]) == (1, 0), health
            # Counted as what they are: nobody's message under a service's level.
            refused = alerts.metric('alerts_rejected_messages_total{code="service_topic"}')
            assert refused >= passed, (refused, passed)
        for topic in look_alikes:  # nothing left for the next start or any other reader
            assert retained(broker.port, topic) is None, topic


def test_made_up_sites_of_one_device_are_bounded_and_reported(tmp_path: Path) -> None:
    """Issue 11, point 3 (alerts' half): a device varying its topic's site level makes up
    devices; with UNKNOWN_DEVICES=accept alerts keeps state of at most UNKNOWN_DEVICES_MAX of
    them, and says so in /healthz and /metrics."""
    offline_topic = f"{P}/alerts/device_offline/ewaste/{BIN}"
    reading = {"ts": int(time.time() * 1000), "fill_pct": 95.0, "weight_kg": 300.0}
    body = json.dumps(reading).encode()
    with (
        running_broker(tmp_path / "broker") as broker,
        running_alerts(
            broker, tmp_path, "alerts", UNKNOWN_DEVICES="accept", UNKNOWN_DEVICES_MAX="3"
        ) as alerts,
        client(broker.port, "svc.operator") as operator,
    ):
        assert not operator.subscribe(offline_topic).is_failure
        with client(broker.port, BIN) as device:
            passed = sum(
                not device.publish(f"{P}/fake{n}/ewaste_bin/{BIN}/telemetry", body).is_failure
                for n in range(6)
            )
            # The registry's own device is judged however many were made up before it.
            status = device.publish(f"{P}/ewaste/ewaste_bin/{BIN}/status", b"offline")
            assert not status.is_failure
        operator.wait_for(offline_topic)
        health = alerts.health()
        assert (health["unknown_devices"], health["unknown_devices_max"]) == ("accept", 3)
        # At most three made up; the real one, never refused, still fired.
        assert health["unknown_devices_seen"] <= 3 and health["firing"] == 1, health
        assert health["unknown_devices_refused"] >= passed - 3, (health, passed)
        refused = alerts.metric('alerts_rejected_messages_total{code="unknown_device_limit"}')
        assert refused == health["unknown_devices_refused"], (refused, health)
