"""facility-ingest behaviour against real servers: dead letters, the v2 path (VictoriaMetrics),
the file sink, partial writes, shared subscriptions, /healthz and /metrics."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from common.messages import DeadLetter
from tests.helpers import MessageCollector, wait_until
from tests.integration.ingest_support import (
    BASE_TS_MS,
    IngestFactory,
    Publisher,
    assert_exactly_stored,
    ingest_processes,
    labelled,
    publish_acknowledged,
    reading,
    readings,
    stored_count,
    v1_env,
    wait_exactly_stored,
    wait_stored,
)
from tests.servers import InfluxDB1Server, MosquittoServer, VictoriaMetricsServer

TELEMETRY = "facility/ewaste/ewaste_bin/bin-001/telemetry"


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[IngestFactory]:
    yield from ingest_processes(tmp_path)


def _bad_messages(now_ms: int) -> list[tuple[str, bytes, str]]:
    """One message per contract rejection rule: (topic, payload, expected reason code)."""

    def body(**fields: object) -> bytes:
        return json.dumps({"ts": now_ms - 1000, **fields}).encode()

    return [
        (TELEMETRY, b"not json", "invalid_json"),
        (TELEMETRY, b"[1, 2]", "not_object"),
        (TELEMETRY, body(weight_kg=5), "missing_field"),
        (TELEMETRY, body(weight_kg="12", fill_pct=5), "wrong_type"),
        (TELEMETRY, body(weight_kg=True, fill_pct=5), "wrong_type"),
        (TELEMETRY, b'{"ts": %d, "weight_kg": NaN, "fill_pct": 5}' % now_ms, "not_finite"),
        (TELEMETRY, body(weight_kg=1, fill_pct=150), "out_of_range"),
        (
            TELEMETRY,
            json.dumps({"ts": now_ms + 3_600_000, "weight_kg": 1, "fill_pct": 1}).encode(),
            "ts_in_future",
        ),
        (
            TELEMETRY,
            json.dumps({"ts": "yesterday", "weight_kg": 1, "fill_pct": 1}).encode(),
            "invalid_ts",
        ),
        (TELEMETRY, body(weight_kg=1, fill_pct=1, device_id="bin-002"), "device_id_mismatch"),
        ("facility/ewaste/toaster/t-1/telemetry", body(weight_kg=1), "unknown_kind"),
        ("facility/BAD/ewaste_bin/bin-001/telemetry", body(weight_kg=1, fill_pct=1), "bad_topic"),
        (TELEMETRY, b" " * 17_000, "too_large"),
        (TELEMETRY, b"\xff\xfe\x00", "not_utf8"),
        ("facility/ewaste/ewaste_bin/bin-001/status", b"maybe", "bad_status"),
    ]


def test_invalid_messages_are_dead_lettered_with_reasons_and_valid_ones_stored(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    mqtt_subscriber: Callable[..., MessageCollector],
) -> None:
    letters = mqtt_subscriber(mosquitto.url, "facility/deadletter/ingest")
    ingest = ingest_factory(v1_env(mosquitto, influxdb1)).start()
    ingest.wait_connected()
    bad = _bad_messages(int(time.time() * 1000))
    good = readings(300)
    # Interleaved, so rejected messages sit between valid ones in every batch.
    mixed = []
    for i, (topic, payload, _) in enumerate(bad):
        mixed.extend(good[i * 20 : (i + 1) * 20])
        mixed.append((topic, payload, 0))
    mixed.extend(good[len(bad) * 20 :])
    publish_acknowledged(mosquitto, mixed)

    received = [DeadLetter.model_validate_json(p) for _, p in letters.wait_for(len(bad), 30)]
    assert Counter(letter.code for letter in received) == Counter(code for _, _, code in bad)
    by_code = {letter.code: letter for letter in received}
    assert by_code["not_utf8"].payload_encoding == "base64"
    assert base64.b64decode(by_code["not_utf8"].payload) == b"\xff\xfe\x00"
    assert by_code["invalid_json"].raw_payload() == b"not json"
    assert by_code["bad_topic"].topic == "facility/BAD/ewaste_bin/bin-001/telemetry"
    assert all(letter.program == "ingest" and letter.reason for letter in received)

    wait_exactly_stored(influxdb1, good, ingest)
    metrics = ingest.metrics()
    for code, count in Counter(code for _, _, code in bad).items():
        assert metrics[labelled("ingest_messages_rejected_total", reason=code)] == count
    # Every message, rejected or not, was acknowledged (none left for redelivery).
    wait_until(lambda: ingest.metric("ingest_messages_acked_total") == len(mixed), timeout=30)


def test_database_refused_lines_are_dead_lettered_and_the_rest_kept(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    mqtt_subscriber: Callable[..., MessageCollector],
) -> None:
    # lid_open first stored as a string: later boolean lid_open values clash (HTTP 400,
    # "partial write: field type conflict"), which only the database can know.
    influxdb1.create_database("facility")
    influxdb1.write(
        f'ewaste_bin,device_id=bin-009,site=ewaste lid_open="stuck" {BASE_TS_MS - 1}', "facility"
    )
    letters = mqtt_subscriber(mosquitto.url, "facility/deadletter/ingest")
    ingest = ingest_factory(v1_env(mosquitto, influxdb1)).start()
    ingest.wait_connected()
    good = readings(400)
    clashing = [
        (
            TELEMETRY,
            json.dumps(
                {"ts": BASE_TS_MS + 10_000 + i, "weight_kg": 1.0, "fill_pct": 2, "lid_open": True}
            ).encode(),
            BASE_TS_MS + 10_000 + i,
        )
        for i in range(3)
    ]
    publish_acknowledged(
        mosquitto, good[:100] + clashing[:1] + good[100:250] + clashing[1:] + good[250:]
    )

    received = [DeadLetter.model_validate_json(p) for _, p in letters.wait_for(3, 30)]
    assert {letter.code for letter in received} == {"sink_rejected"}
    assert sorted(letter.raw_payload() for letter in received) == sorted(p for _, p, _ in clashing)
    assert all("conflict" in letter.reason for letter in received)
    wait_stored(influxdb1, len(good), ingest)
    stored = {row["time"] for row in influxdb1.query("SELECT * FROM ewaste_bin", db="facility")}
    assert {ts for _, _, ts in good} <= stored
    assert not {ts for _, _, ts in clashing} & stored


def test_v2_api_writes_through_influxdb_client_into_victoria_metrics(
    mosquitto: MosquittoServer,
    victoria_metrics: VictoriaMetricsServer,
    ingest_factory: IngestFactory,
) -> None:
    env = {
        "MQTT_URL": mosquitto.url,
        "INFLUX_URL": victoria_metrics.url,
        "INFLUX_API_VERSION": "2",
        "INFLUX_TOKEN": "unused-by-victoria-metrics",
    }
    ingest = ingest_factory(env).start()
    ingest.wait_connected()
    expected = readings(2000)
    publish_acknowledged(mosquitto, expected)
    wait_until(lambda: ingest.metric("ingest_points_stored_total") >= len(expected), timeout=60)
    samples = victoria_metrics.samples('{__name__="ewaste_bin_weight_kg"}')
    # VictoriaMetrics keeps duplicates (InfluxDB overwrites), so compare distinct timestamps.
    assert {s.timestamp for s in samples} == {ts for _, _, ts in expected}
    assert {s.labels["zone"] for s in samples} >= {"cheolsan"}  # registry enrichment
    assert all(s.labels["site"] == "ewaste" for s in samples)


def test_file_sink_output_loads_into_influxdb(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    tmp_path: Path,
) -> None:
    out = tmp_path / "points.lp"
    ingest = ingest_factory(
        {"MQTT_URL": mosquitto.url, "INGEST_SINK": "file", "INGEST_FILE_PATH": str(out)}
    ).start()
    ingest.wait_connected()
    expected = readings(1000)
    online = ("facility/ewaste/ewaste_bin/bin-001/status", b"online", 0)
    publish_acknowledged(mosquitto, [*expected, online])
    wait_until(lambda: out.exists() and out.read_bytes().count(b"\n") == 1001, timeout=60)
    assert ingest.terminate() == 0
    influxdb1.create_database("facility")
    influxdb1.write(out.read_bytes(), "facility", precision="ms")  # what `influx write` does
    assert_exactly_stored(influxdb1, expected)
    status = influxdb1.query("SELECT online FROM device_status", db="facility")
    assert [row["online"] for row in status] == [True]


def test_shared_group_replicas_split_the_load_and_store_everything(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    env = v1_env(mosquitto, influxdb1, INGEST_SHARED_GROUP="ingesters")
    replicas = [
        ingest_factory({**env, "MQTT_CLIENT_ID": f"facility-ingest-{n}"}, name=f"ingest-{n}")
        for n in (1, 2)
    ]
    for replica in replicas:
        replica.start().wait_connected()
    expected = readings(3000)
    publish_acknowledged(mosquitto, expected, rate=3000)
    wait_exactly_stored(influxdb1, expected, replicas[0])
    shares = [
        r.metric(labelled("ingest_messages_received_total", channel="telemetry")) for r in replicas
    ]
    assert sum(shares) == len(expected) and min(shares) > 0


def test_healthz_and_metrics_describe_the_pipeline(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    ingest = ingest_factory(v1_env(mosquitto, influxdb1, INGEST_SPOOL_MAX_BYTES="1048576")).start()
    ingest.wait_connected()
    expected = readings(500)
    publish_acknowledged(mosquitto, expected)
    wait_stored(influxdb1, len(expected), ingest)
    wait_until(lambda: ingest.health()[0] == 200, timeout=30)
    _, health = ingest.health()
    assert health["mqtt"]["connected"] is True
    assert health["sink"] == {
        "kind": "influx1",
        "state": "ok",
        "reachable": True,
        "last_status": None,
        "error": None,
    }
    assert health["spool"]["max_bytes"] == 1048576 and health["spool"]["batches"] == 0
    wait_until(lambda: ingest.metric("ingest_messages_acked_total") == len(expected), timeout=30)
    metrics = ingest.metrics()
    assert metrics["ingest_points_stored_total"] == len(expected)
    assert metrics["ingest_spool_max_bytes"] == 1048576
    assert metrics["ingest_batch_points_count"] >= 1
    assert metrics["ingest_end_to_end_lag_seconds_count"] == len(expected)
    assert metrics[labelled("ingest_write_duration_seconds_count", outcome="stored")] >= 1
    assert stored_count(influxdb1) == len(expected)


def test_stored_messages_are_acknowledged_to_the_broker(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    """PUBACKs (sent a batch at a time) really reach the broker: resuming ingest's session
    after a clean stop, the first message delivered is a new one, not a redelivery."""
    client_id = "ingest-ack-check"
    ingest = ingest_factory(v1_env(mosquitto, influxdb1, MQTT_CLIENT_ID=client_id)).start()
    ingest.wait_connected()
    sent = readings(3000)
    publisher = Publisher(mosquitto.host, mosquitto.port)
    publisher.publish_all(sent)
    publisher.wait_acknowledged()
    wait_until(lambda: ingest.metric("ingest_messages_acked_total") == len(sent), timeout=60)
    assert ingest.terminate() == 0

    marker = reading(10_000)
    first: list[bytes] = []
    arrived = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        first.append(bytes(msg.payload))
        arrived.set()

    resumed = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    resumed.on_message = on_message
    resumed.connect(mosquitto.host, mosquitto.port, clean_start=False)
    resumed.loop_start()
    try:
        publisher.publish_all([marker])
        publisher.wait_acknowledged()
        assert arrived.wait(30)
        assert first[0] == marker[1]
    finally:
        resumed.disconnect()
        resumed.loop_stop()
        publisher.close()
