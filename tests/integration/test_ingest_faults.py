"""facility-ingest under faults, against real Mosquitto (persistent) and InfluxDB 1.x: every
test publishes uniquely-timestamped readings and checks exactly that set is stored."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.integration.ingest_support import (
    IngestFactory,
    IngestProcess,
    Publisher,
    assert_exactly_stored,
    ingest_processes,
    publish_acknowledged,
    readings,
    stored_count,
    wait_exactly_stored,
)
from tests.servers import InfluxDB1Server, MosquittoServer


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[IngestFactory]:
    yield from ingest_processes(tmp_path)


OUTAGE_S = 30  # issue 4: the database stopped for 30 s in the middle of the run


def v1_env(broker: MosquittoServer, influx: InfluxDB1Server, **extra: str) -> dict[str, str]:
    return {
        "MQTT_URL": broker.url,
        "INFLUX_URL": influx.url,
        "INFLUX_API_VERSION": "1",
        **extra,
    }


def test_two_sigkills_mid_run_lose_nothing(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    expected = readings(6000)
    ingest = ingest_factory(v1_env(mosquitto, influxdb1)).start()
    ingest.wait_connected()
    publisher = Publisher(mosquitto.host, mosquitto.port).publish_in_background(expected, 2000)
    for threshold in (1500, 3500):
        wait_until(lambda: stored_count(influxdb1) >= threshold, timeout=60, interval=0.05)
        ingest.kill()  # mid-batch: some messages received, some written, none acknowledged
        ingest.start()
    publisher.wait_acknowledged()
    publisher.close()
    wait_exactly_stored(influxdb1, expected, ingest)


def test_database_outage_is_spooled_and_replayed_in_order(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    # A 30 s database outage in the middle of 40 s of traffic (400 msg/s).
    expected = readings(16_000)
    ingest = ingest_factory(v1_env(mosquitto, influxdb1)).start()
    ingest.wait_connected()
    publisher = Publisher(mosquitto.host, mosquitto.port).publish_in_background(expected, 400)
    wait_until(lambda: stored_count(influxdb1) >= 500, timeout=60, interval=0.05)
    influxdb1.stop()
    outage_ends = time.monotonic() + OUTAGE_S

    def unhealthy_until_the_outage_ends() -> bool:
        # Polled all through the outage: it must report the sink down every time.
        status, health = ingest.health()
        assert status == 503 and health["sink"]["state"] == "unreachable", health
        return time.monotonic() >= outage_ends

    wait_until(lambda: ingest.metric("ingest_points_spooled_total") >= 1000, timeout=60)
    wait_until(unhealthy_until_the_outage_ends, timeout=OUTAGE_S + 10, interval=0.5)
    assert ingest.health()[1]["spool"]["batches"] > 0
    influxdb1.start()
    publisher.wait_acknowledged()
    publisher.close()
    wait_exactly_stored(influxdb1, expected, ingest)
    wait_until(lambda: ingest.health()[1]["spool"]["batches"] == 0, timeout=30)
    assert ingest.metric("ingest_points_replayed_total") >= 1000
    wait_until(lambda: ingest.health()[0] == 200, timeout=30)


def test_broker_restart_mid_run_loses_nothing(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    first, second = readings(3000), readings(2000, start=3000)
    ingest = ingest_factory(
        v1_env(mosquitto, influxdb1, INFLUX_BUCKET="facility", INGEST_BATCH_SIZE="200")
    ).start()
    ingest.wait_connected()
    # Stop ingest so the broker holds a backlog for its persistent session across the restart.
    assert ingest.terminate() == 0
    publish_acknowledged(mosquitto, first)
    ingest.start()
    wait_until(lambda: stored_count(influxdb1) >= 500, timeout=60, interval=0.05)
    mosquitto.restart()  # mid-run: part of the backlog stored, part still queued or in flight
    publish_acknowledged(mosquitto, second, client_id="test-publisher-2")
    wait_exactly_stored(influxdb1, first + second, ingest)


def test_sigterm_mid_run_exits_cleanly_and_loses_nothing(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    expected = readings(4000)
    ingest = ingest_factory(v1_env(mosquitto, influxdb1)).start()
    ingest.wait_connected()
    publisher = Publisher(mosquitto.host, mosquitto.port).publish_in_background(expected, 2000)
    wait_until(lambda: stored_count(influxdb1) >= 1000, timeout=60, interval=0.05)
    assert ingest.terminate(timeout=30) == 0
    assert "ingest stopped clean=True" in ingest.log_tail(5)
    ingest.start()
    publisher.wait_acknowledged()
    publisher.close()
    wait_exactly_stored(influxdb1, expected, ingest)


def test_missing_database_is_unhealthy_and_nothing_lost_once_created(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    expected = readings(1500)
    ingest = ingest_factory(
        v1_env(mosquitto, influxdb1, INFLUX_BUCKET="facility", INGEST_CREATE_BUCKET="false")
    ).start()
    ingest.wait_connected()
    publish_acknowledged(mosquitto, expected)
    wait_until(lambda: ingest.metric("ingest_points_spooled_total") >= len(expected), timeout=60)
    status, health = ingest.health()
    assert status == 503
    assert health["sink"]["state"] == "refused" and health["sink"]["last_status"] == 404
    assert "database not found" in ingest.log_tail(200)
    influxdb1.create_database("facility")  # the operator fixes it
    wait_exactly_stored(influxdb1, expected, ingest)
    wait_until(lambda: ingest.health()[0] == 200, timeout=30)


def test_wrong_credentials_are_unhealthy_and_nothing_lost_once_fixed(
    mosquitto: MosquittoServer,
    server_factory: Callable[..., InfluxDB1Server],
    ingest_factory: IngestFactory,
) -> None:
    influx = server_factory(InfluxDB1Server, settings={"http": {"auth-enabled": True}})
    influx.query_raw("CREATE USER admin WITH PASSWORD 'secret' WITH ALL PRIVILEGES")
    influx.http.auth = ("admin", "secret")
    influx.create_database("facility")
    expected = readings(1200)
    wrong = ingest_factory(
        v1_env(mosquitto, influx, INFLUX_TOKEN="admin:wrong", INGEST_CREATE_BUCKET="false")
    ).start()
    wrong.wait_connected()
    publish_acknowledged(mosquitto, expected)
    wait_until(lambda: wrong.metric("ingest_points_spooled_total") >= len(expected), timeout=60)
    status, health = wrong.health()
    assert status == 503 and health["sink"]["state"] == "refused"
    assert health["sink"]["last_status"] == 401
    assert wrong.terminate() == 0
    # Same spool directory, right token: the spool is replayed at start-up.
    fixed = IngestProcess(wrong.log_path.parent, {**wrong.env, "INFLUX_TOKEN": "admin:secret"})
    fixed.start()
    try:
        wait_until(lambda: stored_count(influx) >= len(expected), timeout=60, interval=0.25)
        assert_exactly_stored(influx, expected)
        wait_until(lambda: fixed.health()[0] == 200, timeout=30)
    finally:
        fixed.stop()
