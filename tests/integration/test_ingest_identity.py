"""Issue 11, points 3 and 4 against real Mosquitto + facility-ingest + InfluxDB 1.x: a device
may publish only as the (site, kind, id) the registry gives it, and a huge message comes back
as a small dead letter."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.messages import DeadLetter
from tests.helpers import MessageCollector
from tests.integration.ingest_support import (
    IngestFactory,
    ingest_processes,
    labelled,
    publish_acknowledged,
    readings,
    v1_env,
    wait_exactly_stored,
)
from tests.servers import InfluxDB1Server, MosquittoServer

FAKE_SITES = 50


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[IngestFactory]:
    yield from ingest_processes(tmp_path)


def _env(broker: MosquittoServer, influx: InfluxDB1Server, **extra: str) -> dict[str, str]:
    # Only the devices' series in the database.
    return v1_env(broker, influx, INGEST_STATS_INTERVAL_S="0", **extra)


def _impostor_messages() -> list[tuple[str, bytes, int]]:
    """bin-001 (registered at site ewaste) speaking under 50 sites it does not belong to:
    40 readings and 10 statuses."""
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(FAKE_SITES):
        site = f"fake-{i:02d}"
        if i % 5 == 4:
            out.append((f"facility/{site}/ewaste_bin/bin-001/status", b"online", 0))
        else:
            ts = now_ms - 60_000 + i
            body = json.dumps({"ts": ts, "weight_kg": 1.0, "fill_pct": 99}).encode()
            out.append((f"facility/{site}/ewaste_bin/bin-001/telemetry", body, ts))
    return out


def _series_sites(influx: InfluxDB1Server) -> Counter[str]:
    """How many series each site has in the database."""
    rows = influx.query("SHOW SERIES", db="facility")
    sites: Counter[str] = Counter()
    for row in rows:
        tags = dict(part.split("=", 1) for part in str(row["key"]).split(",")[1:])
        sites[tags["site"]] += 1
    return sites


@pytest.mark.parametrize(
    ("policy", "max_unknown", "accepted"),
    [("reject", None, 0), ("accept", None, FAKE_SITES), ("accept", "20", 20)],
    ids=["reject", "accept", "accept-capped"],
)
def test_a_device_under_fake_sites_adds_no_series_when_unknown_devices_are_rejected(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    mqtt_subscriber: Callable[..., MessageCollector],
    policy: str,
    max_unknown: str | None,
    accepted: int,
) -> None:
    extra = {"UNKNOWN_DEVICES": policy}
    if max_unknown is not None:
        extra["UNKNOWN_DEVICES_MAX"] = max_unknown
    letters = mqtt_subscriber(mosquitto.url, "facility/deadletter/ingest")
    ingest = ingest_factory(_env(mosquitto, influxdb1, **extra)).start()
    ingest.wait_connected()
    good = readings(400)
    impostor = _impostor_messages()
    mixed = [*good[:200], *impostor, *good[200:]]
    publish_acknowledged(mosquitto, mixed)

    # Every registered reading is stored, whatever the impostor did; of its messages, only
    # those let through (the first ``accepted``, in order) are.
    let_through = [m for m in impostor[:accepted] if m[0].endswith("/telemetry")]
    wait_exactly_stored(influxdb1, good + let_through, ingest)
    refused = FAKE_SITES - accepted
    received = [DeadLetter.model_validate_json(p) for _, p in letters.wait_for(refused, 30)]
    code = "unknown_device" if policy == "reject" else "unknown_device_limit"
    assert Counter(letter.code for letter in received) == Counter(
        {code: refused} if refused else {}
    )
    if policy == "reject":
        assert all("registered at site 'ewaste'" in letter.reason for letter in received)
    fake_sites = {site: n for site, n in _series_sites(influxdb1).items() if site != "ewaste"}
    assert len(fake_sites) == accepted  # one series per fake site let through, none beyond

    # Counted with the batch that carried them, handed over before the last one was stored.
    metrics = ingest.metrics()
    assert metrics.get(labelled("ingest_messages_rejected_total", reason=code), 0) == refused
    assert metrics["ingest_unknown_devices"] == accepted
    _, health = ingest.health()
    assert health["devices"]["unknown"] == policy
    assert health["devices"]["unknown_accepted"] == accepted
    assert ingest.terminate() == 0


def test_a_one_mib_message_comes_back_as_a_dead_letter_of_a_few_kib(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    mqtt_subscriber: Callable[..., MessageCollector],
) -> None:
    letters = mqtt_subscriber(mosquitto.url, "facility/deadletter/ingest")
    ingest = ingest_factory(_env(mosquitto, influxdb1)).start()
    ingest.wait_connected()
    huge = b'{"ts": 1, "pad": "' + b"x" * (1 << 20) + b'"}'
    publish_acknowledged(mosquitto, [("facility/ewaste/ewaste_bin/bin-001/telemetry", huge, 0)])

    [(_, raw)] = letters.wait_for(1, 30)
    assert len(raw) < 4 * 1024
    letter = DeadLetter.model_validate_json(raw)
    assert letter.code == "too_large"
    assert letter.payload_bytes == len(huge)
    assert letter.payload_sha256 == hashlib.sha256(huge).hexdigest()
    assert letter.payload_truncated
    assert huge.startswith(letter.raw_payload())
    assert ingest.terminate() == 0
