"""Micro-benchmark: common.lineproto.encode_point against influxdb-client's Point, same run.

Run with ``python -m scripts.bench.lineproto [--repeats 5] [-n 100000]``.
"""

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from common.lineproto import FieldValue, encode_point

N = 100_000
# Points cycle through this many devices per kind: the steady state of ingest, where every
# device reports again and again, rather than one series encoded 100k times.
DEVICES = 200
KINDS = ("ewaste_bin", "energy")

PointTuple = tuple[str, dict[str, str], dict[str, FieldValue], int]
Encoder = Callable[[str, Mapping[str, str], Mapping[str, FieldValue], int], str]


def _ewaste_bin(rng: random.Random, n: int, ts_ms: int) -> PointTuple:
    tags = {
        "site": f"site-{n % 7}",
        "device_id": f"bin-{n:04d}",
        "zone": f"zone-{n % 12}",
        "residential_type": rng.choice(["apartment", "house", "mixed"]),
    }
    fields: dict[str, FieldValue] = {
        "weight_kg": round(rng.uniform(0, 120), 2),
        "fill_pct": round(rng.uniform(0, 100), 1),
        "battery_pct": round(rng.uniform(5, 100), 1),
        "temperature_c": round(rng.uniform(-5, 35), 1),
        "lid_open": rng.random() < 0.05,
    }
    return "ewaste_bin", tags, fields, ts_ms


def _energy(rng: random.Random, n: int, ts_ms: int) -> PointTuple:
    tags = {"site": f"site-{n % 7}", "device_id": f"meter-{n:04d}"}
    pv = round(rng.uniform(0, 8000), 1)
    load = round(rng.uniform(200, 6000), 1)
    fields: dict[str, FieldValue] = {
        "pv_power_w": pv,
        "load_power_w": load,
        "grid_power_w": round(load - pv, 1),
        "battery_soc_pct": round(rng.uniform(0, 100), 1),
        "pv_energy_wh": round(rng.uniform(0, 5e6), 1),
        "load_energy_wh": round(rng.uniform(0, 5e6), 1),
        "grid_import_wh": round(rng.uniform(0, 3e6), 1),
        "grid_export_wh": round(rng.uniform(0, 3e6), 1),
    }
    return "energy", tags, fields, ts_ms


def _workload(kind: str, n: int) -> list[PointTuple]:
    rng = random.Random(kind)
    make = _ewaste_bin if kind == "ewaste_bin" else _energy
    start_ms = 1_718_000_000_000
    pool = [make(rng, device, start_ms + device) for device in range(DEVICES)]
    return [pool[i % DEVICES] for i in range(n)]


def point_line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ms: int
) -> str:
    """The baseline: what a caller of influxdb-client writes to get the same line."""
    point: Any = Point(measurement)
    for key, tag_value in tags.items():
        point.tag(key, tag_value)
    for key, field_value in fields.items():
        point.field(key, field_value)
    return str(point.time(ts_ms, WritePrecision.MS).to_line_protocol())


def _points_per_s(encode: Encoder, points: list[PointTuple]) -> float:
    # GC off while timing, as timeit does: both encoders make only acyclic garbage.
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for measurement, tags, fields, ts_ms in points:
            encode(measurement, tags, fields, ts_ms)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return len(points) / elapsed


def run(repeats: int = 5, n: int = N) -> dict[str, float]:
    """Median points/s of each encoder per point kind, and lineproto's speed-up over Point."""
    results: dict[str, float] = {}
    for kind in KINDS:
        points = _workload(kind, n)
        for point in points[:DEVICES]:
            if encode_point(*point) != point_line(*point):
                raise AssertionError(f"encoders disagree on {point!r}")
        ours: list[float] = []
        baseline: list[float] = []
        for _ in range(repeats):
            # Interleaved so drift in machine load hits both encoders alike.
            ours.append(_points_per_s(encode_point, points))
            baseline.append(_points_per_s(point_line, points))
        results[f"{kind}_lineproto_points_per_s"] = statistics.median(ours)
        results[f"{kind}_point_points_per_s"] = statistics.median(baseline)
        results[f"{kind}_speedup"] = statistics.median(ours) / statistics.median(baseline)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("-n", type=int, default=N, help="points per kind per repeat")
    args = parser.parse_args()
    results = run(args.repeats, args.n)
    print(
        f"line protocol encoding, {args.n} points per kind, {DEVICES} devices per kind, "
        f"median of {args.repeats} repeats"
    )
    print(f"{'measurement':<12} {'lineproto pts/s':>16} {'Point pts/s':>14} {'speed-up':>9}")
    for kind in KINDS:
        print(
            f"{kind:<12} {results[f'{kind}_lineproto_points_per_s']:>16,.0f} "
            f"{results[f'{kind}_point_points_per_s']:>14,.0f} "
            f"{results[f'{kind}_speedup']:>8.1f}x"
        )


if __name__ == "__main__":
    main()
