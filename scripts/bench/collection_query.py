"""The "Recycled this year vs 541 t" panel's query, before and after the ``collection``
measurement (issue 15): the old DIFFERENCE over raw 5-minute weights against SUM over one
point per emptying, on the same month of a city's bins in a real InfluxDB 1.x.

``python -m scripts.bench collection_query``; medians of ``repeats`` runs of each query."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common.devices import load_registry
from common.kinds import EwasteBinParams
from common.lineproto import encode_lines
from common.queries import collected_kg, collection_kg
from common.schema import Point, collection_point
from tests.servers import InfluxDB1Server

ROOT = Path(__file__).resolve().parents[2]
DB = "facility"
DAY_MS = 86_400_000
STEP_MS = 300_000  # the bins' 5-minute readings


def _points(days: int, end_ms: int) -> tuple[list[Point], list[Point]]:
    """Every bin of the registry filling for ``days``, emptied once a week (on its own day):
    the raw ``ewaste_bin`` weights and the ``collection`` points alerts would write."""
    registry = load_registry(ROOT / "config" / "devices.yaml")
    rng = random.Random(15)
    raw: list[Point] = []
    collections: list[Point] = []
    start_ms = end_ms - days * DAY_MS
    for index, device in enumerate(registry.bins()):
        capacity = device.params_of(EwasteBinParams).capacity_kg
        tags = {"site": device.site, "device_id": device.id}
        tags.update(registry.tags_for(device.site, device.id))
        weight = capacity * rng.uniform(0.1, 0.5)
        stored: float | None = None
        for n, ts in enumerate(range(start_ms, end_ms, STEP_MS)):
            emptied = n % (7 * DAY_MS // STEP_MS) == (index * 37) % (7 * DAY_MS // STEP_MS)
            weight = rng.uniform(0, 2) if emptied else min(capacity, weight + capacity / 2500)
            kg = round(weight, 2)
            raw.append(("ewaste_bin", tags, {"weight_kg": kg, "fill_pct": 0.0}, ts))
            if emptied and stored is not None and stored - kg > 2:
                site_tags = registry.tags_for(device.site, device.id)
                collections.append(
                    collection_point(device.site, device.id, site_tags, stored - kg, ts)
                )
            stored = kg
    return raw, collections


def _timed(server: InfluxDB1Server, sql: str, repeats: int) -> tuple[float, Any]:
    runs = []
    rows: Any = None
    for _ in range(repeats):
        started = time.perf_counter()
        rows = server.query(sql, DB)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), rows


def run(repeats: int = 5, days: int = 30) -> dict[str, object]:
    end_ms = int(time.time() // 3600 * 3600 * 1000)
    raw, collections = _points(days, end_ms)
    span = f"time >= {end_ms - days * DAY_MS}ms AND time <= {end_ms}ms"
    # As the panel sends them (variables = all, the year's range clipped to the data).
    old = f'SELECT "collected" / 1000 AS "t" FROM ({collected_kg("collected", span)})'
    new = f'SELECT "collected" / 1000 AS "t" FROM ({collection_kg("collected", span)})'
    old = old.replace("$timeFilter", span)
    with tempfile.TemporaryDirectory() as tmp, InfluxDB1Server(Path(tmp) / "influxdb") as server:
        server.create_database(DB)
        for start in range(0, len(raw), 10_000):
            server.write(encode_lines(raw[start : start + 10_000]), DB)
        server.write(encode_lines(collections), DB)
        old_s, old_rows = _timed(server, old, repeats)
        new_s, new_rows = _timed(server, new, repeats)
    return {
        "bins": len({p[1]["device_id"] for p in raw}),
        "days": days,
        "ewaste_bin_points": len(raw),
        "collection_points": len(collections),
        "old_query_s": round(old_s, 4),
        "new_query_s": round(new_s, 4),
        "speed_up": round(old_s / new_s, 1),
        "old_t": old_rows[0]["t"],
        "new_t": new_rows[0]["t"],
    }
