"""facility-ingest's spool and shutdown under faults, against real Mosquitto and InfluxDB 1.x: a
flipped bit inside the spool, a full disk under it (and under the dead-letter store), and
SIGTERM while a QoS 0 flood meets a database that hangs."""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from services.ingest.origins import unpack
from tests.helpers import wait_until
from tests.integration.fault_proxy import FaultProxy
from tests.integration.ingest_support import (
    IngestFactory,
    Publisher,
    ingest_processes,
    log_mentions,
    publish_acknowledged,
    readings,
    stored_count,
    wait_exactly_stored,
)
from tests.servers import InfluxDB1Server, MosquittoServer

FRAME_HEADER = struct.Struct(">II")  # the spool's frame: length, crc32, then the batch


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[IngestFactory]:
    yield from ingest_processes(tmp_path)


def v1_env(broker: MosquittoServer, influx_url: str, **extra: str) -> dict[str, str]:
    return {
        "MQTT_URL": broker.url,
        "INFLUX_URL": influx_url,
        "INFLUX_API_VERSION": "1",
        "INGEST_STATS_INTERVAL_S": "0",  # only the test's readings in the spool
        **extra,
    }


def spool_frames(segment: Path) -> list[tuple[int, bytes]]:
    """(offset, batch) of each frame of a spool segment file."""
    raw = segment.read_bytes()
    frames, offset = [], 0
    while offset < len(raw):
        length, _crc = FRAME_HEADER.unpack_from(raw, offset)
        frames.append((offset, raw[offset + 8 : offset + 8 + length]))
        offset += 8 + length
    return frames


def test_a_flipped_bit_mid_spool_loses_only_its_batch_and_ingest_stays_up(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    expected = readings(1000)
    influxdb1.stop()  # everything goes to the spool
    ingest = ingest_factory(v1_env(mosquitto, influxdb1.url, INGEST_BATCH_SIZE="50")).start()
    ingest.wait_connected()
    publish_acknowledged(mosquitto, expected)
    wait_until(lambda: ingest.metric("ingest_points_spooled_total") >= len(expected), timeout=60)
    assert ingest.terminate() == 0
    (segment,) = sorted((ingest.log_path.parent / "ingest-spool").glob("*.seg"))
    frames = spool_frames(segment)
    assert len(frames) >= 10
    offset, batch = frames[len(frames) // 2]
    raw = bytearray(segment.read_bytes())
    raw[offset + 8 + len(batch) // 2] ^= 0x04  # one bit, inside a batch in the middle
    segment.write_bytes(bytes(raw))
    lines, _origins = unpack(batch)  # a spooled batch is framed with its lines' origins
    damaged = {int(line.rsplit(b" ", 1)[1]) for line in lines.splitlines()}
    assert damaged

    influxdb1.start()
    ingest.start()
    survivors = [r for r in expected if r[2] not in damaged]
    wait_exactly_stored(influxdb1, survivors, ingest)
    assert ingest.proc is not None and ingest.proc.poll() is None, ingest.log_tail()
    assert ingest.metric("ingest_spool_quarantined_segments") == 1
    spool = ingest.health()[1]["spool"]
    assert spool["quarantined_segments"] == 1 and spool["batches"] == 0
    (kept,) = Path(spool["quarantine_dir"]).iterdir()
    assert kept.read_bytes() == bytes(raw)  # kept as found, for a person to look at
    assert log_mentions(ingest, "quarantined")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (mounting needs root, which tests and CI run as here)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "small-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill_leaving(disk: Path, free_bytes: int) -> Path:
    """Fill ``disk`` with one file until about ``free_bytes`` are left; the file, to delete
    when space is to come back."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - free_bytes))
    return filler


def test_a_full_disk_under_the_spool_holds_acks_and_loses_nothing_once_space_returns(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    small_disk: Path,
) -> None:
    filler = fill_leaving(small_disk, 96 * 1024)
    expected = readings(3000)  # ~300 KiB of line protocol: far more than fits
    ingest = ingest_factory(
        v1_env(mosquitto, influxdb1.url, INGEST_SPOOL_DIR=str(small_disk / "spool"))
    ).start()
    ingest.wait_connected()
    influxdb1.stop()  # after ingest created its database: everything goes to the spool
    publisher = Publisher(mosquitto.host, mosquitto.port).publish_in_background(expected, 0)

    def disk_full_reported() -> bool:
        status, health = ingest.health()
        return status == 503 and "disk full" in (health["spool"].get("error") or "")

    wait_until(disk_full_reported, timeout=60, interval=0.25)
    assert ingest.metric("ingest_spool_disk_full") == 1
    assert ingest.metric("ingest_messages_acked_total") < len(expected)  # acks held
    assert ingest.proc is not None and ingest.proc.poll() is None, ingest.log_tail()

    filler.unlink()  # the operator frees space
    influxdb1.start()
    publisher.wait_acknowledged()
    publisher.close()
    wait_exactly_stored(influxdb1, expected, ingest)
    wait_until(lambda: ingest.health()[0] == 200, timeout=30)
    assert ingest.metric("ingest_spool_disk_full") == 0
    assert log_mentions(ingest, "less free disk space than INGEST_SPOOL_MAX_BYTES")  # at start


def test_a_full_disk_under_the_dead_letter_store_holds_acks_and_keeps_every_letter(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    small_disk: Path,
) -> None:
    filler = fill_leaving(small_disk, 16 * 1024)
    bad = [(topic, b"not json " + payload, ts) for topic, payload, ts in readings(200)]
    good = readings(50, start=200)
    ingest = ingest_factory(
        v1_env(mosquitto, influxdb1.url, INGEST_DEADLETTER_DIR=str(small_disk / "letters"))
    ).start()
    ingest.wait_connected()
    publisher = Publisher(mosquitto.host, mosquitto.port).publish_in_background([*bad, *good], 0)

    def store_refusal_reported() -> bool:
        status, health = ingest.health()
        return status == 503 and bool(health["deadletters"]["error"])

    wait_until(store_refusal_reported, timeout=60, interval=0.25)
    assert ingest.metric("ingest_deadletter_store_error") == 1
    assert ingest.metric("ingest_messages_acked_total") < len(bad)  # acks held
    assert ingest.proc is not None and ingest.proc.poll() is None, ingest.log_tail()

    filler.unlink()  # the operator frees space
    publisher.wait_acknowledged()
    publisher.close()
    wait_exactly_stored(influxdb1, good, ingest)
    wait_until(lambda: ingest.health()[0] == 200, timeout=30)
    letters = ingest.stored_dead_letters()
    assert sorted(x["payload_bytes"] for x in letters) == sorted(len(p) for _, p, _ in bad)
    assert {x["code"] for x in letters} == {"invalid_json"}


def test_sigterm_during_a_qos0_flood_with_a_hanging_database_exits_within_the_timeout(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    proxy = FaultProxy(influxdb1.url)
    try:
        ingest = ingest_factory(
            v1_env(
                mosquitto,
                proxy.url,
                INGEST_WRITE_TIMEOUT_MS="120000",  # a write hangs far longer than the test
                INGEST_SHUTDOWN_TIMEOUT_S="2",
                INGEST_FLUSH_INTERVAL_MS="60000",  # batches of exactly 500
                INGEST_RECEIVE_MAXIMUM="1500",  # the inbox holds 1500 + 1000
            )
        ).start()
        ingest.wait_connected()
        wait_until(lambda: ingest.health()[1]["sink"]["state"] == "ok", timeout=30)
        proxy.fail("blackhole")  # accepts and reads each request, never answers
        flood = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-flood")
        flood.connect(mosquitto.host, mosquitto.port)
        flood.loop_start()
        try:
            last = None
            for topic, payload, _ in readings(20_000):
                last = flood.publish(topic, payload, qos=0)
            assert last is not None
            last.wait_for_publish(60)
            # The store thread hangs on the first batch, two wait in the batch queue, the encode
            # thread blocks with a fourth, and the inbox fills up: paho's thread waits for room.
            wait_until(lambda: ingest.metric("ingest_inbox_messages") >= 2500, timeout=60)
            assert stored_count(influxdb1) == 0
            # The store thread waits on a write that never gets an answer.
            wait_until(lambda: proxy.count("blackhole", "/write") >= 1, timeout=30)
            # The bound is the test's own timeout, not a timing assertion: generous, yet far
            # below the 120 s a hanging write would hold a stop that waits for it.
            assert ingest.terminate(timeout=30) == 0
        finally:
            flood.disconnect()
            flood.loop_stop()
        assert log_mentions(ingest, "ingest stopped")
    finally:
        proxy.close()
