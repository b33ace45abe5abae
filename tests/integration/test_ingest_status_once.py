"""Issue 12, point 6, against real facility-ingest + Mosquitto + InfluxDB 1.x: a retained
status re-sent at every reconnect is one ``device_status`` point, not one per re-send; only a
change of state adds a point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import publish, wait_until
from tests.integration.ingest_support import IngestFactory, IngestProcess, ingest_processes, v1_env
from tests.servers import InfluxDB1Server, InfluxQueryError, MosquittoServer

STATUS_TOPIC = "facility/ewaste/ewaste_bin/bin-001/status"


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[IngestFactory]:
    yield from ingest_processes(tmp_path)


def _status_points(influx: InfluxDB1Server) -> list[bool]:
    try:
        rows = influx.query("SELECT online FROM device_status", db="facility")
    except (InfluxQueryError, httpx.HTTPError):
        return []
    return [bool(row["online"]) for row in rows]


def _run_until_status_taken(ingest: IngestProcess, statuses: int = 1) -> None:
    """Start, wait until the broker's status messages are stored and acknowledged, stop."""
    ingest.start()
    wait_until(lambda: ingest.metric("ingest_messages_acked_total") >= statuses, timeout=30)
    assert ingest.terminate() == 0


def test_retained_status_resent_at_every_reconnect_is_stored_once(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    publish(mosquitto.url, STATUS_TOPIC, b"online", retain=True)
    # MQTT 3.1.1 has no retain handling: the broker re-sends the retained status at every
    # re-subscribe, as it does on MQTT v5 when the session is new.
    ingest = ingest_factory(v1_env(mosquitto, influxdb1, MQTT_PROTOCOL="3.1.1"))
    for _ in range(3):
        _run_until_status_taken(ingest)
    assert _status_points(influxdb1) == [True]

    # A change of state is a new point; the re-sends of it again are not.
    publish(mosquitto.url, STATUS_TOPIC, b"offline", retain=True)
    _run_until_status_taken(ingest, statuses=1)
    _run_until_status_taken(ingest)
    assert _status_points(influxdb1) == [True, False]
