"""The simulator against a real Mosquitto: backfill payloads, fault accounting, the truck loop,
Last Will, and the load mode."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common.messages import DispatchRequest, DispatchStatus, DispatchStop
from common.payloads import Reading, Rejection, StatusReading, parse_message
from common.settings import load_settings
from common.topics import Topics
from devices.simulator.engine import Outgoing
from devices.simulator.load import run_fast
from devices.simulator.mqtt_out import MqttPublisher
from devices.simulator.run import Window, run_scenario
from devices.simulator.scenario import Scenario, load_scenario
from devices.simulator.settings import SimulatorSettings
from tests.helpers import MessageCollector, collect_messages, publish

REPO = Path(__file__).resolve().parents[3]
TOPICS = Topics("facility")
DEADLINE_S = 60.0


def _settings(url: str, **extra: Any) -> SimulatorSettings:
    return load_settings(
        SimulatorSettings,
        mqtt_url=url,
        mqtt_client_id=None,
        mqtt_topic_prefix="facility",
        devices_file=REPO / "config" / "devices.yaml",
        simulator_progress="off",
        **extra,
    )


def _until(what: str, condition: Any, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # polling a condition with a deadline, not standing in for sync
    raise AssertionError(f"timed out waiting for {what}")


def test_backfill_payloads_validate_and_rejections_match_the_injected_faults(
    mosquitto: Any,
) -> None:
    sc = load_scenario("ci-smoke", REPO / "config" / "scenarios").model_copy(
        update={"duration_s": 3 * 3600.0, "events": ()}
    )
    assert sc.start is not None
    start_ms = int(sc.start.timestamp() * 1000)
    window = Window(start_ms, start_ms + 3 * 3_600_000, float("inf"))
    settings = _settings(mosquitto.url, simulator_fleet=False)
    with MessageCollector(mosquitto.url, "facility/#") as sub:
        summary = run_scenario(settings, sc, window, seed=None, stop=threading.Event())
        total = summary["messages_total"] + summary["status_messages"]
        received = sub.wait_for(total, timeout=DEADLINE_S)
    now_ms = time.time_ns() // 1_000_000
    rejected: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    statuses = 0
    for topic, payload in received:
        result = parse_message(topic, payload, TOPICS, now_ms=now_ms)
        if isinstance(result, Rejection):
            rejected[result.code] += 1
        elif isinstance(result, Reading):
            kinds[result.kind] += 1
        else:
            assert isinstance(result, StatusReading)
            statuses += 1
    assert sum(summary["faults"].values()) > 10
    assert dict(rejected) == summary["expected_rejections"]
    assert sum(kinds.values()) + sum(rejected.values()) == summary["messages_total"]
    assert statuses == summary["status_messages"] == 2 * summary["devices"]
    # A clean stop leaves every device retained as offline.
    retained = collect_messages(mosquitto.url, "facility/+/+/+/status", summary["devices"], 30)
    assert {payload for _, payload in retained} == {b"offline"}


def _truck_scenario() -> Scenario:
    # A past window at 3600x: a 40-minute collection round takes well under a second.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    return Scenario(
        name="truck-loop",
        start=start,
        duration_s=5 * 86400.0,
        speed=3600.0,
        devices=("bin-001", "bin-002"),
        interval_s={"ewaste_bin": 60},
        initial={"bin-001": {"fill_pct": 70.0}, "bin-002": {"fill_pct": 60.0}},
    )


def test_dispatch_request_over_mqtt_empties_the_bins_and_retains_completed(
    mosquitto: Any,
) -> None:
    settings = _settings(mosquitto.url)
    stop = threading.Event()
    result: dict[str, Any] = {}
    sc = _truck_scenario()
    assert sc.start is not None
    start_ms = int(sc.start.timestamp() * 1000)
    window = Window(start_ms, start_ms + int(sc.duration_s * 1000), sc.speed)
    bins = ["bin-001", "bin-002"]
    filters = [TOPICS.telemetry("ewaste", "ewaste_bin", b) for b in bins]
    status_topic = TOPICS.dispatch_status("d-loop-1")
    with MessageCollector(mosquitto.url, [*filters, status_topic]) as sub:
        runner = threading.Thread(
            target=lambda: result.update(run_scenario(settings, sc, window, seed=None, stop=stop)),
            daemon=True,
        )
        runner.start()
        try:
            sub.wait_for(4, timeout=DEADLINE_S)  # both bins are reporting
            request = DispatchRequest(
                dispatch_id="d-loop-1",
                truck_id="truck-1",
                zone="cheolsan",
                stops=[_stop(b) for b in bins],
                est_load_kg=300.0,
                route_km=12.0,
            )

            def completed() -> DispatchStatus | None:
                # Re-sent until seen: the fleet ignores a dispatch id it already drives.
                publish(mosquitto.url, TOPICS.dispatch_requests(), request.model_dump_json())
                for m in sub.received:
                    if m.topic == status_topic:
                        status = DispatchStatus.model_validate_json(m.payload)
                        if status.state == "completed":
                            return status
                return None

            status = _until("a completed dispatch status", completed)
            seen = [
                DispatchStatus.model_validate_json(m.payload)
                for m in sub.received
                if m.topic == status_topic
            ]
            assert [s.state for s in seen] == ["en_route", "completed"]
            left_ms = int(datetime.fromisoformat(seen[0].ts).timestamp() * 1000)
            assert status.stops_done == bins and status.truck_id == "truck-1"
            done_ms = int(datetime.fromisoformat(status.ts).timestamp() * 1000)

            def weights_after(device: str) -> list[tuple[int, float]]:
                out = []
                for m in sub.received:
                    if m.topic == TOPICS.telemetry("ewaste", "ewaste_bin", device):
                        body = json.loads(m.payload)
                        ts = int(datetime.fromisoformat(body["ts"]).timestamp() * 1000)
                        out.append((ts, float(body["weight_kg"])))
                return out

            before = sum([w for ts, w in weights_after(b) if ts <= left_ms][-1] for b in bins)
            for device in bins:
                later = _until(
                    f"a reading of {device} after the collection",
                    lambda d=device: [w for ts, w in weights_after(d) if ts > done_ms],
                )
                assert later[0] < 1.0
            assert status.collected_kg is not None
            assert abs(status.collected_kg - before) < 10.0
            assert before > 300
        finally:
            stop.set()
            runner.join(DEADLINE_S)
    assert not runner.is_alive()
    assert result["bins_collected"] == 2
    retained = collect_messages(mosquitto.url, status_topic, 1, 30)
    assert DispatchStatus.model_validate_json(retained[0][1]).state == "completed"


def _stop(device_id: str) -> DispatchStop:
    from common.devices import load_registry

    device = load_registry(REPO / "config" / "devices.yaml").device(device_id)
    assert device is not None and device.latitude is not None and device.longitude is not None
    return DispatchStop(device_id=device_id, latitude=device.latitude, longitude=device.longitude)


def test_a_crashed_device_connection_leaves_its_offline_last_will(mosquitto: Any) -> None:
    status = TOPICS.status("ewaste", "ewaste_bin", "bin-007")
    pub = MqttPublisher(_settings(mosquitto.url), TOPICS, {"bin-007": status})
    with MessageCollector(mosquitto.url, status) as sub:
        pub.start(timeout=DEADLINE_S)
        try:
            pub.publish(Outgoing("bin-007", status, b"online", retain=True))
            assert pub.flush(DEADLINE_S)
            conn_socket = next(iter(pub.links)).client.socket()
            assert isinstance(conn_socket, socket.socket)
            conn_socket.shutdown(socket.SHUT_RDWR)  # vanish without DISCONNECT
            got = sub.wait_for(2, timeout=DEADLINE_S)
        finally:
            pub.stop()
    assert [payload for _, payload in got] == [b"online", b"offline"]
    assert collect_messages(mosquitto.url, status, 1, 30)[0][1] == b"offline"


def test_load_mode_publishes_valid_distinct_readings_all_acknowledged(mosquitto: Any) -> None:
    count = 5000
    with MessageCollector(mosquitto.url, TOPICS.all_telemetry()) as sub:
        result = run_fast(_settings(mosquitto.url), 50, 0.0, count, None, threading.Event())
        received = sub.wait_for(count, timeout=DEADLINE_S)
    assert result.messages == count
    assert len(set(received)) == count
    assert len({topic for topic, _ in received}) == 50
    now_ms = time.time_ns() // 1_000_000
    for topic, payload in received:
        assert isinstance(parse_message(topic, payload, TOPICS, now_ms=now_ms), Reading)


def test_load_mode_holds_a_requested_rate(mosquitto: Any) -> None:
    result = run_fast(_settings(mosquitto.url), 10, 2000.0, 1000, None, threading.Event())
    assert result.messages == 1000
    # 1000 messages at 2000 msg/s cannot finish in much less than half a second.
    assert result.seconds >= 0.45


def _arrival_lag_s(received: list[tuple[str, bytes]]) -> float:
    """Largest ``watermark - ts`` at arrival: how far one device's stream ran behind the
    latest reading any device had delivered (what a receiver judging silence must allow)."""
    watermark = lag = 0
    for topic, payload in received:
        result = parse_message(topic, payload, TOPICS, now_ms=time.time_ns() // 1_000_000)
        if isinstance(result, Reading):
            lag = max(lag, watermark - result.ts_ms)
            watermark = max(watermark, result.ts_ms)
    return lag / 1000


def test_backfill_keeps_device_streams_within_a_minute_of_each_other(mosquitto: Any) -> None:
    # No faults: a held-back (out_of_order) message is late by design, not by skew.
    sc = load_scenario("ci-smoke", REPO / "config" / "scenarios").model_copy(
        update={"duration_s": 4 * 3600.0, "events": (), "faults": {}}
    )
    assert sc.start is not None
    start_ms = int(sc.start.timestamp() * 1000)
    window = Window(start_ms, start_ms + 4 * 3_600_000, float("inf"))
    settings = _settings(mosquitto.url, simulator_fleet=False, simulator_sync_every_s=60)
    with MessageCollector(mosquitto.url, "facility/+/+/+/telemetry") as sub:
        summary = run_scenario(settings, sc, window, seed=None, stop=threading.Event())
        received = sub.wait_for(summary["messages_total"], timeout=DEADLINE_S)
    assert len(received) == summary["messages_total"] > 2000
    # One barrier step (60 s) plus the ordering within it; without the barrier the
    # per-device connections drift apart by many minutes.
    assert _arrival_lag_s(received) <= 60.0
