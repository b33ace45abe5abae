"""A scenario's expected outcomes, checked over the telemetry it produced.

Used in-process by the tests and meant for ``facility-simulator verify`` (which will read the
same series back from InfluxDB instead of from the published messages).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from common.devices import Registry
from common.kinds import VisitorCounterParams
from common.payloads import Reading, parse_message
from common.topics import Topics
from devices.simulator.models.base import to_datetime
from devices.simulator.scenario import Expectation

Series = Mapping[str, Sequence[tuple[int, Mapping[str, float | int | bool]]]]


@dataclass(frozen=True, slots=True)
class Outcome:
    expectation: Expectation
    ok: bool
    detail: str


def accepted_series(
    messages: Iterable[tuple[str, bytes]], topics: Topics, now_ms: int
) -> dict[str, list[tuple[int, dict[str, float | int | bool]]]]:
    """Per device, the readings a receiver accepts, in timestamp order."""
    series: dict[str, list[tuple[int, dict[str, float | int | bool]]]] = {}
    for topic, payload in messages:
        result = parse_message(topic, payload, topics, now_ms=now_ms)
        if isinstance(result, Reading):
            series.setdefault(result.device_id, []).append((result.ts_ms, result.fields))
    for readings in series.values():
        readings.sort(key=lambda item: item[0])
    return series


def _values(series: Series, device: str, name: str) -> list[tuple[int, float]]:
    return [(ts, float(f[name])) for ts, f in series.get(device, ()) if name in f]


def check(expectation: Expectation, series: Series, registry: Registry) -> Outcome:
    e, device = expectation, expectation.device
    if e.type in ("bin_fill_above", "bin_overflows"):
        threshold = 100.0 if e.type == "bin_overflows" else (e.threshold or 90.0)
        fills = _values(series, device, "fill_pct")
        hits = [ts for ts, v in fills if v >= threshold]
        top = max((v for _, v in fills), default=0.0)
        return Outcome(e, bool(hits), f"{device}: highest fill {top:.1f} % (need {threshold})")
    if e.type == "occupancy_above_capacity":
        known = registry.device(device)
        params = known.params if known else None
        own = params.capacity_people if isinstance(params, VisitorCounterParams) else None
        capacity = e.threshold or own or 0
        occ = _values(series, device, "occupancy")
        top = max((v for _, v in occ), default=0.0)
        return Outcome(e, top > capacity, f"{device}: peak occupancy {top:.0f} vs {capacity}")
    if e.type == "grid_import_after_sunset":
        known = registry.device(device)
        site = registry.site(known.site) if known else None
        evening = []
        for ts, f in series.get(device, ()):
            hour = site.local_time(to_datetime(ts)).hour if site else to_datetime(ts).hour
            if hour >= 15 and f.get("pv_power_w") == 0 and float(f.get("grid_power_w", 0)) > 0:
                evening.append(ts)
        return Outcome(e, bool(evening), f"{device}: {len(evening)} evening readings importing")
    if e.type == "device_silent":
        stamps = [ts for ts, _ in series.get(device, ())]
        gap = max((b - a for a, b in itertools.pairwise(stamps)), default=0) / 1000
        return Outcome(e, gap >= e.min_gap_s, f"{device}: longest gap {gap:.0f} s")
    # bin_collected: a heavy bin later reads (nearly) empty.
    threshold = e.threshold or 5.0
    weights = _values(series, device, "weight_kg")
    heavy_seen, emptied = False, False
    for _, w in weights:
        heavy_seen = heavy_seen or w > threshold + 20
        emptied = emptied or (heavy_seen and w < threshold)
    return Outcome(e, emptied, f"{device}: emptied below {threshold} kg: {emptied}")


def check_all(
    expectations: Iterable[Expectation], series: Series, registry: Registry
) -> list[Outcome]:
    return [check(e, series, registry) for e in expectations]
