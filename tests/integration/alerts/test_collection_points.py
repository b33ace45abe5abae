"""The ``collection`` measurement written by the real facility-alerts (Mosquitto, InfluxDB 1.x):
a bin's readings fill, then drop; exactly one point, stamped with the emptying reading's own
time, tagged from the registry; publishing the same readings again (a replay) still leaves one."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from common.schema import COLLECTION_MEASUREMENT
from tests.helpers import bound_port, publish, wait_until
from tests.integration.alerts.support import alerts_run
from tests.servers import InfluxDB1Server, MosquittoServer, wait_alerts_ready
from tests.unit.alerts.helpers import registry

MIN_MS = 60_000
FILLS = (60.0, 75.0, 88.0, 4.0)  # the last reading shows the bin emptied


def publish_bin(broker_url: str, device: str, start_ms: int) -> None:
    """``device``'s readings one minute apart; weight = fill x 3 kg, as the registry's bins."""
    for n, fill in enumerate(FILLS):
        reading = {"ts": start_ms + n * MIN_MS, "fill_pct": fill, "weight_kg": fill * 3}
        topic = f"facility/ewaste/ewaste_bin/{device}/telemetry"
        publish(broker_url, topic, json.dumps(reading))


def collections(influxdb1: InfluxDB1Server, device: str) -> list[dict[str, Any]]:
    q = f"SELECT * FROM {COLLECTION_MEASUREMENT} WHERE device_id = '{device}'"
    return influxdb1.query(q, "facility")


def test_an_emptied_bin_is_one_collection_point_at_event_time_and_a_replay_keeps_one(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, tmp_path: Path
) -> None:
    influxdb1.create_database("facility")
    run = alerts_run(
        tmp_path,
        mosquitto.url,
        "facility-alerts-collection-test",
        INFLUX_URL=influxdb1.url,
        INFLUX_API_VERSION="1",
    )
    start_ms = int(time.time() * 1000) - 30 * MIN_MS
    emptied_ms = start_ms + (len(FILLS) - 1) * MIN_MS
    proc = run.start()
    try:
        wait_alerts_ready(bound_port(run.port_file, proc))
        publish_bin(mosquitto.url, "bin-001", start_ms)
        wait_until(lambda: collections(influxdb1, "bin-001"), timeout=30)
        publish_bin(mosquitto.url, "bin-001", start_ms)  # the replay
        # bin-002's readings come after the replay on the same subscription and the same
        # write queue: once its point is stored, the replay has been written too.
        publish_bin(mosquitto.url, "bin-002", start_ms)
        wait_until(lambda: collections(influxdb1, "bin-002"), timeout=30)
    finally:
        run.stop(proc, signal.SIGTERM)
    assert proc.returncode == 0
    (point,) = collections(influxdb1, "bin-001")
    tags = registry().tags_for("ewaste", "bin-001")
    assert point["time"] == emptied_ms
    assert point["kg"] == (FILLS[-2] - FILLS[-1]) * 3
    assert point["weight_estimated"] is False and "dispatch_id" not in point  # no dispatch
    assert (point["site"], point["zone"], point["residential_type"]) == (
        "ewaste",
        tags["zone"],
        tags["residential_type"],
    )
