"""facility-ingest writes its own figures (``ingest_stats``, ``ingest_rejections``) into the
database it stores data in, so the pipeline dashboard needs no Prometheus."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import wait_until
from tests.integration.ingest_support import (
    IngestFactory,
    ingest_processes,
    publish_acknowledged,
    readings,
    wait_stored,
)
from tests.servers import InfluxDB1Server, InfluxQueryError, MosquittoServer

TELEMETRY = "facility/ewaste/ewaste_bin/bin-001/telemetry"
CLIENT_ID = "ingest-stats-under-test"


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[IngestFactory]:
    yield from ingest_processes(tmp_path)


def _latest(influx: InfluxDB1Server, query: str) -> list[dict[str, Any]]:
    try:
        return influx.query(query, db="facility")
    except (InfluxQueryError, httpx.HTTPError):
        return []  # database or measurement not there yet


def test_own_figures_are_stored_with_counts_matching_what_was_published(
    mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, ingest_factory: IngestFactory
) -> None:
    ingest = ingest_factory(
        {
            "MQTT_URL": mosquitto.url,
            "INFLUX_URL": influxdb1.url,
            "INFLUX_API_VERSION": "1",
            "MQTT_CLIENT_ID": CLIENT_ID,
            "INGEST_STATS_INTERVAL_S": "1",
        }
    ).start()
    ingest.wait_connected()
    good = readings(400)
    now_ms = int(time.time() * 1000)
    bad = [(TELEMETRY, b"not json", 0)] * 3 + [
        (TELEMETRY, json.dumps({"ts": now_ms, "weight_kg": 1, "fill_pct": 150}).encode(), 0)
    ] * 2
    expected_reasons = {"invalid_json": 3, "out_of_range": 2}
    publish_acknowledged(mosquitto, good[:200] + bad + good[200:])
    wait_stored(influxdb1, len(good), ingest)

    latest_stats: list[dict[str, Any]] = []

    def stats_caught_up() -> bool:
        latest_stats[:] = _latest(
            influxdb1,
            f'SELECT * FROM "ingest_stats" WHERE "client_id" = \'{CLIENT_ID}\' '
            "ORDER BY time DESC LIMIT 1",
        )
        return bool(latest_stats) and latest_stats[0]["stored"] == len(good)

    try:
        wait_until(stats_caught_up, timeout=30, interval=0.25)
    except TimeoutError:
        raise AssertionError(f"ingest_stats: {latest_stats}\n{ingest.log_tail()}") from None
    [row] = latest_stats
    assert row["received"] == len(good) + len(bad)
    assert row["rejected"] == len(bad)
    assert row["spooled"] == row["replayed"] == row["retries"] == 0
    assert row["spool_batches"] == 0 and row["spool_bytes"] == 0
    # Every interval with a write carries its latency; some interval after the data had both.
    written = _latest(
        influxdb1,
        'SELECT MAX("write_max_ms") AS "max", MAX("lag_p99_s") AS "lag" FROM "ingest_stats"',
    )
    assert written and written[0]["max"] > 0 and written[0]["lag"] > 0

    rejections = _latest(
        influxdb1,
        'SELECT LAST("count") AS "count" FROM "ingest_rejections" GROUP BY "client_id", "reason"',
    )
    counts = {r["reason"]: r["count"] for r in rejections}
    # Every reason code is reported (0 until it happens); the ones published carry their count.
    assert {"bad_topic", "sink_rejected", "unencodable"} <= set(counts)
    assert {reason: n for reason, n in counts.items() if n} == expected_reasons
    assert {r["client_id"] for r in rejections} == {CLIENT_ID}
    assert Counter(type(r["count"]) for r in rejections) == {int: len(counts)}

    # The data's own figures do not count the service's points, and /metrics agrees.
    assert ingest.metric("ingest_points_stored_total") == len(good)
    assert ingest.metric("ingest_self_report_points_stored_total") > 0
