"""The map's queries on what the real programs write: readings stored by facility-ingest
(bins tagged with their registry coordinates) and the route facility-alerts plans for a full
bin, on a real Mosquitto and InfluxDB 1.x."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.devices import load_registry
from tests.helpers import bound_port, publish, wait_until
from tests.integration.alerts.support import alerts_run
from tests.integration.ingest_support import IngestFactory, ingest_processes, v1_env
from tests.servers import InfluxDB1Server, MosquittoServer, wait_alerts_ready
from tests.unit.alerts.helpers import bin_full_rules

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = load_registry(ROOT / "config" / "devices.yaml")


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[IngestFactory]:
    yield from ingest_processes(tmp_path)


def _map_query(ref_id: str) -> str:
    board = json.loads((ROOT / "grafana" / "dashboards" / "ewaste-collection.json").read_text())
    [panel] = [p for p in board["panels"] if p["type"] == "geomap"]
    [query] = [str(t["query"]) for t in panel["targets"] if t["refId"] == ref_id]
    now_ms = int(time.time() * 1000)
    # As Grafana sends it with every zone and housing type, for today.
    return (
        query.replace(
            "$timeFilter", f"time >= {now_ms - 3_600_000}ms AND time <= {now_ms + 60_000}ms"
        )
        .replace("$zone", ".*")
        .replace("$residential_type", ".*")
    )


def test_map_places_stored_bins_and_draws_the_route_alerts_planned(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    tmp_path: Path,
) -> None:
    influxdb1.create_database("facility")
    ingest_factory(v1_env(mosquitto, influxdb1)).start()
    (tmp_path / "alerts").mkdir()
    run = alerts_run(
        tmp_path / "alerts",
        mosquitto.url,
        "facility-alerts-map-test",
        INFLUX_URL=influxdb1.url,
        INFLUX_API_VERSION="1",
    )
    (tmp_path / "alerts" / "rules.yaml").write_text(
        bin_full_rules('clear: "< 60"', "dispatch: true")
    )
    proc = run.start()
    try:
        wait_alerts_ready(bound_port(run.port_file, proc))
        now_ms = int(time.time() * 1000)
        for device, fill in (("bin-002", 75.0), ("bin-030", 20.0), ("bin-001", 95.0)):
            body = {"ts": now_ms - 60_000, "fill_pct": fill, "weight_kg": fill * 2.5}
            publish(
                mosquitto.url, f"facility/ewaste/ewaste_bin/{device}/telemetry", json.dumps(body)
            )
        placed: list[dict[str, Any]] = []
        route: list[dict[str, Any]] = []

        def drawn() -> bool:
            placed[:] = influxdb1.query(_map_query("A"), "facility")
            route[:] = influxdb1.query(_map_query("D"), "facility")
            return len(placed) == 3 and len(route) >= 4

        wait_until(drawn, timeout=30)
    finally:
        run.stop(proc, signal.SIGTERM)
        run.kill_all()
    for row in placed:
        located = REGISTRY.device(row["device_id"])
        assert located is not None
        assert (float(row["latitude"]), float(row["longitude"])) == (
            located.latitude,
            located.longitude,
        )
    assert {r["device_id"]: r["fill"] for r in placed} == {
        "bin-001": 95.0,
        "bin-002": 75.0,
        "bin-030": 20.0,
    }
    stops = [r["device_id"] for r in sorted(route, key=lambda r: r["time"])]
    assert stops[0] == stops[-1] == "depot"
    assert sorted(stops[1:-1]) == ["bin-001", "bin-002"]  # same zone, above 70 %: rides along
    assert {r["truck_id"] for r in route} == {route[0]["truck_id"]}
    [depot] = influxdb1.query(_map_query("C"), "facility")
    assert (depot["latitude"], depot["longitude"]) == (
        REGISTRY.depot.latitude,
        REGISTRY.depot.longitude,
    )
