"""facility-alerts against a real Mosquitto (and InfluxDB 1.x): a full bin fires, is retained,
asks for a truck; a restart neither re-fires nor forgets; a collection resolves it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.devices import load_registry
from common.messages import AlertEvent, DispatchRequest, DispatchStatus
from common.settings import load_settings
from common.timestamps import ms_to_iso
from services.alerts.config import load_rules
from services.alerts.service import AlertsService
from services.alerts.settings import AlertsSettings
from tests.helpers import MessageCollector, collect_messages, publish, wait_until
from tests.servers import InfluxDB1Server, MosquittoServer

ROOT = Path(__file__).resolve().parents[3]
P = "facility"
BIN_TOPIC = f"{P}/ewaste/ewaste_bin/{{}}/telemetry"


def _settings(broker: MosquittoServer, influx: InfluxDB1Server | None) -> AlertsSettings:
    return load_settings(
        AlertsSettings,
        mqtt_url=broker.url,
        mqtt_client_id="facility-alerts-test",
        influx_url=influx.url if influx else "http://127.0.0.1:9",
        influx_api_version="1",
        alerts_influx_enabled=influx is not None,
        alerts_rules_file=ROOT / "config" / "rules.yaml",
        devices_file=ROOT / "config" / "devices.yaml",
        alerts_tick_s=0.2,
    )


@pytest.fixture
def start_service() -> Iterator[Callable[[AlertsSettings], AlertsService]]:
    running: list[AlertsService] = []

    def start(settings: AlertsSettings) -> AlertsService:
        service = AlertsService(
            settings,
            load_rules(settings.alerts_rules_file),
            load_registry(settings.devices_file),
        )
        service.start()
        assert service.synced.wait(20), "retained state never confirmed"
        running.append(service)
        return service

    yield start
    for service in running:
        service.stop(timeout=2)


def _bin(url: str, device: str, ts_ms: int, fill: float, weight: float) -> None:
    body = {"ts": ts_ms, "fill_pct": fill, "weight_kg": weight, "battery_pct": 80.0}
    publish(url, BIN_TOPIC.format(device), json.dumps(body))


def _retained(url: str, topic: str) -> bytes | None:
    """The retained payload on ``topic`` or None: a sentinel retained on a topic subscribed
    after it bounds the wait (the broker sends retained messages in subscription order)."""
    sentinel = f"{P}/test/sentinel"
    publish(url, sentinel, b"x", retain=True)
    got = collect_messages(url, [topic, sentinel], 1, timeout=10)
    return got[0][1] if got[0][0] == topic else None


def _events(collector: MessageCollector, count: int) -> list[AlertEvent]:
    return [AlertEvent.model_validate_json(p) for _, p in collector.wait_for(count, 20)]


def test_full_bin_fires_is_retained_dispatched_and_written_to_influx(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    start_service: Callable[[AlertsSettings], AlertsService],
    mqtt_subscriber: Callable[..., MessageCollector],
) -> None:
    influxdb1.create_database("facility")
    alerts = mqtt_subscriber(mosquitto.url, f"{P}/alerts/bin_full/#")
    requests = mqtt_subscriber(mosquitto.url, f"{P}/dispatch/requests")
    start_service(_settings(mosquitto, influxdb1))
    t0 = int(time.time() * 1000) - 20 * 60_000
    _bin(mosquitto.url, "bin-002", t0, 75.0, 180.0)  # same zone, rides along
    _bin(mosquitto.url, "bin-001", t0, 91.0, 270.0)
    _bin(mosquitto.url, "bin-001", t0 + 3 * 60_000, 93.0, 279.0)  # held for 'for: 2m'

    pending, firing = _events(alerts, 2)
    assert (pending.state, firing.state) == ("pending", "firing")
    assert firing.device_id == "bin-001" and firing.value == 93.0 and firing.threshold == 90

    retained = collect_messages(mosquitto.url, f"{P}/alerts/active/bin_full/ewaste/bin-001", 1)
    assert AlertEvent.model_validate_json(retained[0][1]).state == "firing"

    request = DispatchRequest.model_validate_json(requests.wait_for(1, 20)[0][1])
    assert request.zone == "cheolsan"
    assert {s.device_id for s in request.stops} == {"bin-001", "bin-002"}
    assert request.est_load_kg == 279.0 + 180.0

    rows: list[dict[str, Any]] = []

    def alert_written() -> bool:
        rows[:] = influxdb1.query("SELECT * FROM alert", db="facility")
        return any(r["state"] == "firing" for r in rows)

    wait_until(alert_written, timeout=20)
    row = next(r for r in rows if r["state"] == "firing")
    assert (row["rule"], row["severity"], row["device_id"]) == ("bin_full", "warning", "bin-001")
    assert row["value"] == 93.0 and row["threshold"] == 90.0

    def dispatch_written() -> bool:
        return bool(influxdb1.query("SELECT * FROM dispatch", db="facility"))

    wait_until(dispatch_written, timeout=20)


def test_restart_neither_refires_nor_forgets_and_collection_resolves(
    mosquitto: MosquittoServer,
    start_service: Callable[[AlertsSettings], AlertsService],
    mqtt_subscriber: Callable[..., MessageCollector],
) -> None:
    settings = _settings(mosquitto, None)
    alerts = mqtt_subscriber(mosquitto.url, f"{P}/alerts/bin_full/ewaste/bin-005")
    requests = mqtt_subscriber(mosquitto.url, f"{P}/dispatch/requests")
    first = start_service(settings)
    t0 = int(time.time() * 1000) - 30 * 60_000
    _bin(mosquitto.url, "bin-005", t0, 95.0, 280.0)
    _bin(mosquitto.url, "bin-005", t0 + 3 * 60_000, 96.0, 285.0)
    assert [e.state for e in _events(alerts, 2)] == ["pending", "firing"]
    request = DispatchRequest.model_validate_json(requests.wait_for(1, 20)[0][1])
    first.stop(timeout=2)

    second = start_service(settings)
    assert second.core.alert(("bin_full", "ewaste", "bin-005")) is not None
    assert (
        request.dispatch_id in second.core.open_dispatch_ids()
    )  # the open dispatch is remembered too
    # Still full after the restart: no second firing, no second dispatch.
    _bin(mosquitto.url, "bin-005", t0 + 6 * 60_000, 97.0, 288.0)
    # The truck reports the collection; the bin alert resolves.
    status = DispatchStatus(
        dispatch_id=request.dispatch_id,
        state="completed",
        truck_id=request.truck_id,
        collected_kg=288,
    )
    publish(mosquitto.url, f"{P}/dispatch/{request.dispatch_id}/status", status.model_dump_json())
    events = _events(alerts, 3)
    assert events[2].state == "resolved", [e.state for e in events]
    assert "collected by dispatch" in events[2].message
    active = f"{P}/alerts/active/bin_full/ewaste/bin-005"
    wait_until(lambda: _retained(mosquitto.url, active) is None, timeout=10)
    wait_until(lambda: request.dispatch_id not in second.core.open_dispatch_ids(), timeout=10)
    assert len(requests.received) == 1


def test_offline_status_fires_device_offline(
    mosquitto: MosquittoServer,
    start_service: Callable[[AlertsSettings], AlertsService],
    mqtt_subscriber: Callable[..., MessageCollector],
) -> None:
    alerts = mqtt_subscriber(mosquitto.url, f"{P}/alerts/device_offline/nzc/nzc-meter-1")
    start_service(_settings(mosquitto, None))
    publish(mosquitto.url, f"{P}/nzc/energy_meter/nzc-meter-1/status", "offline", retain=True)
    event = _events(alerts, 1)[0]
    assert (event.state, event.severity) == ("firing", "warning")
    assert "offline" in event.message


def test_a_reading_overtaken_by_the_collection_neither_refires_nor_dispatches_again(
    mosquitto: MosquittoServer,
    start_service: Callable[[AlertsSettings], AlertsService],
    mqtt_subscriber: Callable[..., MessageCollector],
) -> None:
    # The truck's 'completed' (fleet connection) arrives before the bin's last pre-collection
    # reading (the bin's own connection lagged); that reading must not re-open the alert.
    marker = f"{P}/alerts/device_offline/ewaste/probe-1"
    alerts = mqtt_subscriber(mosquitto.url, [f"{P}/alerts/bin_full/ewaste/bin-005", marker])
    requests = mqtt_subscriber(mosquitto.url, f"{P}/dispatch/requests")
    start_service(_settings(mosquitto, None))
    t0 = int(time.time() * 1000) - 60 * 60_000
    _bin(mosquitto.url, "bin-005", t0, 95.0, 280.0)
    _bin(mosquitto.url, "bin-005", t0 + 3 * 60_000, 96.0, 285.0)
    assert [e.state for e in _events(alerts, 2)] == ["pending", "firing"]
    request = DispatchRequest.model_validate_json(requests.wait_for(1, 20)[0][1])
    done = DispatchStatus(
        dispatch_id=request.dispatch_id,
        state="completed",
        truck_id=request.truck_id,
        ts=ms_to_iso(t0 + 20 * 60_000),
    )
    publish(mosquitto.url, f"{P}/dispatch/{request.dispatch_id}/status", done.model_dump_json())
    assert _events(alerts, 3)[2].state == "resolved"
    _bin(mosquitto.url, "bin-005", t0 + 6 * 60_000, 97.0, 288.0)  # overtaken, still full
    _bin(mosquitto.url, "bin-001", t0 + 25 * 60_000, 10.0, 30.0)  # the stream moves on
    # Everything above is judged before this offline status (one connection, in order).
    publish(mosquitto.url, f"{P}/ewaste/ewaste_bin/probe-1/status", "offline")
    events = _events(alerts, 4)
    assert [(e.rule, e.state) for e in events[3:]] == [("device_offline", "firing")], events
    assert len(requests.received) == 1
