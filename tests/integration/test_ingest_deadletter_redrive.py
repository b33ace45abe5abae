"""Issue 12, point 7, against real facility-ingest + Mosquitto + InfluxDB 1.x: a rejected
message is kept whole on disk, listed, and re-driven into the database once its cause is fixed
(a receiver clock behind, a device missing from the registry); a line the database refuses
while the spool is replayed is dead-lettered as the message it came from."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.integration.fault_proxy import FaultProxy, proxies
from tests.integration.ingest_support import (
    ROOT,
    IngestFactory,
    IngestProcess,
    assert_exactly_stored,
    ingest_processes,
    labelled,
    publish_acknowledged,
    readings,
    v1_env,
    wait_exactly_stored,
)
from tests.servers import InfluxDB1Server, MosquittoServer

AHEAD_MS = 10 * 60 * 1000  # a reading stamped 10 minutes ahead of the receiver's clock


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[IngestFactory]:
    yield from ingest_processes(tmp_path)


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str], FaultProxy]]:
    yield from proxies(FaultProxy)


def _env(broker: MosquittoServer, influx: InfluxDB1Server, **extra: str) -> dict[str, str]:
    return v1_env(broker, influx, INGEST_STATS_INTERVAL_S="0", **extra)


def _bin_reading(device: str, ts_ms: int) -> tuple[str, bytes, int]:
    payload = json.dumps({"ts": ts_ms, "weight_kg": 12.5, "fill_pct": 40}).encode()
    return f"facility/ewaste/ewaste_bin/{device}/telemetry", payload, ts_ms


def _wait_rejected(ingest: IngestProcess, code: str, count: int = 1) -> None:
    name = labelled("ingest_messages_rejected_total", reason=code)
    wait_until(lambda: ingest.metric(name) >= count, timeout=30)


def _redrive(ingest: IngestProcess, *args: str, **env: str) -> dict[str, object]:
    done = ingest.command("deadletters", "redrive", "--json", *args, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    summary: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def test_reading_ahead_of_a_slow_clock_is_kept_and_stored_once_by_a_redrive(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    on_time = readings(3)
    ahead = _bin_reading("bin-001", int(time.time() * 1000) + AHEAD_MS)
    ingest = ingest_factory(_env(mosquitto, influxdb1)).start()
    ingest.wait_connected()
    publish_acknowledged(mosquitto, [*on_time, ahead])
    wait_exactly_stored(influxdb1, on_time, ingest)
    _wait_rejected(ingest, "ts_in_future")
    assert ingest.terminate() == 0

    # Kept on disk past the process: the whole message, why, and where it was rejected.
    [letter] = ingest.stored_dead_letters()
    assert letter["code"] == "ts_in_future" and letter["origin"] == "live"
    assert letter["topic"] == ahead[0]
    assert letter["payload_b64"] and letter["payload_bytes"] == len(ahead[1])
    assert "limit 300 s" in letter["reason"]

    # The clock is fixed (here: the tolerance raised, standing in for it); ingest runs again
    # while the re-drive goes, so both write the store.
    fixed = {"MAX_FUTURE_S": "20m"}
    ingest.env.update(fixed)
    ingest.start()
    ingest.wait_connected()
    summary = _redrive(ingest, **fixed)
    assert summary["stored"] == 1 and summary["still_failing"] == {}, summary
    assert_exactly_stored(influxdb1, [*on_time, ahead])
    assert ingest.stored_dead_letters() == []
    # A second re-drive finds nothing, and nothing is stored twice.
    assert _redrive(ingest, **fixed)["stored"] == 0
    assert_exactly_stored(influxdb1, [*on_time, ahead])


def test_unknown_device_is_stored_by_a_redrive_once_the_registry_has_it(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    tmp_path: Path,
) -> None:
    devices = tmp_path / "devices.yaml"
    shutil.copyfile(ROOT / "config" / "devices.yaml", devices)
    known = readings(2)
    stranger = _bin_reading("bin-999", known[-1][2] + 1)
    env = _env(mosquitto, influxdb1, UNKNOWN_DEVICES="reject", DEVICES_FILE=str(devices))
    ingest = ingest_factory(env).start()
    ingest.wait_connected()
    publish_acknowledged(mosquitto, [*known, stranger])
    wait_exactly_stored(influxdb1, known, ingest)
    _wait_rejected(ingest, "unknown_device")

    # Not fixed yet: it stays, with the new verdict counted.
    summary = _redrive(ingest)
    assert summary["stored"] == 0 and summary["still_failing"] == {"unknown_device": 1}
    [letter] = ingest.stored_dead_letters()
    assert letter["code"] == "unknown_device" and letter["redrives"] == 1

    with devices.open("a") as f:
        f.write(
            "  - {<<: *apt_large, id: bin-999, zone: cheolsan, "
            "latitude: 37.47700, longitude: 126.87000}\n"
        )
    assert _redrive(ingest, "--code", "unknown_device")["stored"] == 1
    assert_exactly_stored(influxdb1, [*known, stranger])
    # Stored the way ingest stores it: with the registry's tags.
    [row] = influxdb1.query(
        "SELECT weight_kg, zone FROM ewaste_bin WHERE device_id='bin-999'", "facility"
    )
    assert row["zone"] == "cheolsan"
    assert ingest.stored_dead_letters() == []


def test_line_refused_during_spool_replay_is_dead_lettered_with_its_message(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    fault_proxy: Callable[[str], FaultProxy],
) -> None:
    bins = readings(5)
    meter_ts = bins[0][2]
    meter_topic = "facility/nzc/energy_meter/meter-9/telemetry"
    meter_payload = json.dumps({"ts": meter_ts, "pv_power_w": 1500.0}).encode()
    proxy = fault_proxy(influxdb1.url)
    ingest = ingest_factory(_env(mosquitto, influxdb1, INFLUX_URL=proxy.url)).start()
    ingest.wait_connected()
    wait_until(lambda: ingest.health()[0] == 200, timeout=30)  # database created
    # The database will refuse the meter's line for its own content (a field type clash),
    # but only at replay: the batch goes to the spool first.
    influxdb1.write(
        f'energy,site=nzc,device_id=meter-9 pv_power_w="text" {meter_ts - 1}', "facility"
    )
    proxy.fail("refuse400")
    publish_acknowledged(mosquitto, [*bins, (meter_topic, meter_payload, meter_ts)])
    wait_until(lambda: ingest.metric("ingest_points_spooled_total") >= 6, timeout=30)
    spooled_by_ms = int(time.time() * 1000)
    proxy.heal()
    wait_exactly_stored(influxdb1, bins, ingest)
    _wait_rejected(ingest, "sink_rejected")

    [letter] = ingest.stored_dead_letters()
    assert letter["code"] == "sink_rejected" and letter["origin"] == "spool_replay"
    assert "field type conflict" in letter["reason"]
    assert letter["topic"] == meter_topic
    assert letter["payload_bytes"] == len(meter_payload)
    assert letter["received_ms"] <= spooled_by_ms  # when it arrived, not when replayed
