"""One realistic day of every measurement in the contract (and ingest's own ingest_stats /
ingest_rejections), for running dashboard queries.

Deterministic (fixed seed) and shaped like the facilities: a sunny PV curve with a meter reset,
visitors during opening hours on two gates, 44 bins filling (some emptied by a truck), devices
going offline, alerts firing and resolving, and dispatches from planned to completed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from common.devices import Registry
from common.kinds import EnergyMeterParams, EwasteBinParams
from common.messages import DispatchRequest, DispatchStop
from common.schema import Point, collection_point, route_points

DAY_MS = 24 * 3600 * 1000
MINUTE_MS = 60_000
SEOUL = ZoneInfo("Asia/Seoul")


def _local_hour(ts_ms: int) -> float:
    local = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(SEOUL)
    return local.hour + local.minute / 60


def energy(registry: Registry, start_ms: int, end_ms: int) -> Iterator[Point]:
    rng = random.Random(1)
    meter = registry.devices_of_kind("energy_meter")[0]
    peak = meter.params_of(EnergyMeterParams).pv_peak_w or 20_000.0
    counters = dict.fromkeys(
        ("pv_energy_wh", "load_energy_wh", "grid_import_wh", "grid_export_wh"), 0.0
    )
    counters["pv_energy_wh"] = 5_000_000.0  # a meter that has been running for years
    soc = 60.0
    reset_at = start_ms + DAY_MS // 2  # the meter restarts mid-window, its counters from 0
    was_reset = False
    for ts in range(start_ms, end_ms + 1, MINUTE_MS):
        hour = _local_hour(ts)
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 13)) if 6 <= hour <= 19 else 0.0
        pv = peak * sun * rng.uniform(0.8, 1.0)
        load = 2500 + (6000 if 9 <= hour < 21 else 0) + rng.uniform(-300, 300)
        battery = max(-5000.0, min(5000.0, pv - load))  # charge (+) from surplus, discharge (-)
        if (soc >= 95 and battery > 0) or (soc <= 10 and battery < 0):
            battery = 0.0
        soc = min(100.0, max(0.0, soc + battery / 60 / 30_000 * 100))
        grid = load - pv + battery
        if ts >= reset_at and not was_reset:
            counters, was_reset = dict.fromkeys(counters, 0.0), True
        counters["pv_energy_wh"] += pv / 60
        counters["load_energy_wh"] += load / 60
        counters["grid_import_wh"] += max(grid, 0.0) / 60
        counters["grid_export_wh"] += max(-grid, 0.0) / 60
        fields: dict[str, float | int | bool | str] = {
            "pv_power_w": round(pv, 1),
            "load_power_w": round(load, 1),
            "grid_power_w": round(grid, 1),
            "battery_soc_pct": round(soc, 2),
        }
        fields.update({k: round(v, 1) for k, v in counters.items()})
        yield "energy", {"site": meter.site, "device_id": meter.id}, fields, ts


def visitors(registry: Registry, start_ms: int, end_ms: int) -> Iterator[Point]:
    rng = random.Random(2)
    for gate in registry.devices_of_kind("visitor_counter"):
        entries = exits = 0
        for ts in range(start_ms, end_ms + 1, MINUTE_MS):
            hour = _local_hour(ts)
            if 10 <= hour < 18:
                entries += rng.randint(0, 4)
                exits = min(entries, exits + rng.randint(0, 4))
            else:
                exits = entries  # everyone leaves by closing time
            yield (
                "visitors",
                {"site": gate.site, "device_id": gate.id},
                {"entries_total": entries, "exits_total": exits, "occupancy": entries - exits},
                ts,
            )


def bins(registry: Registry, start_ms: int, end_ms: int) -> Iterator[Point]:
    rng = random.Random(3)
    for index, device in enumerate(registry.bins()):
        capacity = device.params_of(EwasteBinParams).capacity_kg
        weight = capacity * rng.uniform(0.1, 0.7)
        emptied_at = start_ms + DAY_MS * (index % 4 + 1) // 5 if index % 3 == 0 else None
        tags = {
            "site": device.site,
            "device_id": device.id,
            **registry.tags_for(device.site, device.id),
        }
        # A few bins go offline in the evening (device_status below) and stop reporting: the
        # map marks them stale.
        silent_from = end_ms - DAY_MS // 4 if index % 10 == 3 else end_ms + 1
        stored: float | None = None  # the weight as written, so kg match its DIFFERENCE
        for ts in range(start_ms, min(end_ms + 1, silent_from), device.interval_s * 1000):
            emptied = emptied_at is not None and ts >= emptied_at
            if emptied:
                weight, emptied_at = rng.uniform(0, 2), None
            weight = min(capacity, weight + rng.uniform(0, capacity / 200))
            if emptied and stored is not None:
                # What facility-alerts writes when it sees this drop (services/alerts desk).
                yield collection_point(
                    device.site,
                    device.id,
                    registry.tags_for(device.site, device.id),
                    stored - round(weight, 2),
                    ts,
                )
            stored = round(weight, 2)
            fields: dict[str, float | int | bool | str] = {
                "weight_kg": round(weight, 2),
                "fill_pct": round(100 * weight / capacity, 2),
                "capacity_kg": capacity,
                "battery_pct": 80.0,
                "temperature_c": 12.5,
                "lid_open": False,
            }
            yield "ewaste_bin", tags, fields, ts


def device_status(registry: Registry, start_ms: int, end_ms: int) -> Iterator[Point]:
    for index, device in enumerate(registry.devices):
        tags = {"site": device.site, "kind": device.kind, "device_id": device.id}
        yield "device_status", tags, {"online": True}, start_ms + MINUTE_MS
        if index % 10 == 3:  # a few devices drop off for good in the evening
            yield "device_status", tags, {"online": False}, end_ms - DAY_MS // 4


def alerts(registry: Registry, start_ms: int, end_ms: int) -> Iterator[Point]:
    for index, device in enumerate(registry.bins()[:6]):
        tags = {
            "rule": "bin_full",
            "severity": "warning",
            "site": device.site,
            "device_id": device.id,
        }
        fired = start_ms + (index + 1) * DAY_MS // 8
        yield (
            "alert",
            tags,
            {
                "state": "firing",
                "value": 85.0,
                "threshold": 80.0,
                "message": f"{device.id} is 85% full",
            },
            fired,
        )
        if index % 2 == 0:  # half are resolved by a collection, the others stay active
            yield (
                "alert",
                tags,
                {
                    "state": "resolved",
                    "value": 3.0,
                    "threshold": 80.0,
                    "message": f"{device.id} emptied",
                },
                fired + 3 * 3600 * 1000,
            )
    gate = registry.devices_of_kind("visitor_counter")[0]
    crowded = {
        "rule": "occupancy_high",
        "severity": "info",
        "site": gate.site,
        "device_id": gate.id,
    }
    yield (
        "alert",
        crowded,
        {
            "state": "firing",
            "value": 170.0,
            "threshold": 160.0,
            "message": "main entrance area at 85% of capacity",
        },
        end_ms - DAY_MS // 3,
    )
    yield (
        "alert",
        crowded,
        {
            "state": "resolved",
            "value": 120.0,
            "threshold": 160.0,
            "message": "main entrance area back to normal",
        },
        end_ms - DAY_MS // 4,
    )
    meter = registry.devices_of_kind("energy_meter")[0]
    yield (
        "alert",
        {"rule": "battery_low", "severity": "critical", "site": meter.site, "device_id": meter.id},
        {"state": "firing", "value": 9.0, "threshold": 10.0, "message": "battery below 10%"},
        end_ms - 3600 * 1000,
    )


def dispatches(registry: Registry, start_ms: int, end_ms: int) -> Iterator[Point]:
    zones = registry.zones()
    for index, truck in enumerate(registry.trucks):
        zone = zones[index % len(zones)]
        dispatch_id = f"d-{index + 1:04d}"
        planned = start_ms + (index + 1) * DAY_MS // 5
        steps = [("planned", 0.0, planned), ("en_route", 0.0, planned + 10 * MINUTE_MS)]
        if index < len(registry.trucks) - 1:  # the last truck is still on its way
            steps.append(("completed", 640.0 + 100 * index, planned + 95 * MINUTE_MS))
        stops = registry.bins_in_zone(zone)[:3]
        request = DispatchRequest(
            dispatch_id=dispatch_id,
            truck_id=truck.id,
            zone=zone,
            stops=[
                DispatchStop(device_id=b.id, latitude=b.latitude or 0, longitude=b.longitude or 0)
                for b in stops
            ],
            est_load_kg=700.0,
            route_km=9.5,
            depot_latitude=registry.depot.latitude,
            depot_longitude=registry.depot.longitude,
        )
        yield from route_points(request, planned)
        for state, collected, ts in steps:
            yield (
                "dispatch",
                {"zone": zone, "truck_id": truck.id},
                {
                    "dispatch_id": dispatch_id,
                    "stops": 6,
                    "est_load_kg": 700.0,
                    "state": state,
                    "collected_kg": collected,
                },
                ts,
            )


REJECTION_REASONS = ("invalid_json", "out_of_range", "ts_in_future", "sink_rejected")


def ingest_self_report(registry: Registry, start_ms: int, end_ms: int) -> Iterator[Point]:
    """Two ingest replicas (shared subscription) reporting every minute: a 30-minute database
    outage (retries, spool growing, then replayed) and a restart of one replica (counters from
    0), as ``ingest_stats`` and ``ingest_rejections`` write them."""
    rng = random.Random(4)
    per_minute = max(1, len(registry.devices)) * 2  # both replicas share the fleet's readings
    outage = (start_ms + DAY_MS // 3, start_ms + DAY_MS // 3 + 30 * MINUTE_MS)
    restart_b = start_ms + 3 * DAY_MS // 4
    for client in ("ingest-a", "ingest-b"):
        total = dict.fromkeys(("received", "stored", "spooled", "replayed", "retries"), 0)
        rejected = dict.fromkeys(REJECTION_REASONS, 0)
        spool_bytes = spool_batches = 0
        restarted = False
        for ts in range(start_ms, end_ms + 1, MINUTE_MS):
            if client == "ingest-b" and ts >= restart_b and not restarted:
                total, rejected, restarted = (
                    dict.fromkeys(total, 0),
                    dict.fromkeys(rejected, 0),
                    True,
                )
            arrived = per_minute // 2 + rng.randint(-5, 5)
            bad = {
                "invalid_json": int(rng.random() < 0.2),
                "out_of_range": int(rng.random() < 0.05),
            }
            bad["ts_in_future"] = int(rng.random() < 0.01)
            points = arrived - sum(bad.values())
            total["received"] += arrived
            for reason, count in bad.items():
                rejected[reason] += count
            write_ms = rng.uniform(4, 15)
            if outage[0] <= ts < outage[1]:
                total["spooled"] += points
                total["retries"] += 2
                spool_bytes += points * 140
                spool_batches += 1
                write_ms = 3000.0  # connection timeouts before each batch is spooled
            elif spool_batches:
                total["replayed"] += total["spooled"] - total["replayed"]
                total["stored"] += points
                spool_bytes = spool_batches = 0
            else:
                total["stored"] += points
            fields: dict[str, float | int | bool | str] = {
                **total,
                "rejected": sum(rejected.values()),
                "spool_bytes": spool_bytes,
                "spool_batches": spool_batches,
                "write_p99_ms": round(write_ms, 3),
                "write_max_ms": round(write_ms * rng.uniform(1.0, 1.6), 3),
                "lag_p99_s": round(rng.uniform(0.1, 0.4) if not spool_batches else 60.0, 3),
            }
            yield "ingest_stats", {"client_id": client}, fields, ts
            for reason, count in rejected.items():
                yield (
                    "ingest_rejections",
                    {"client_id": client, "reason": reason},
                    {"count": count},
                    ts,
                )


def one_day(registry: Registry, end_ms: int) -> list[Point]:
    """Every measurement, for the 24 hours ending at ``end_ms``."""
    start_ms = end_ms - DAY_MS
    points: list[Point] = []
    for generate in (
        energy,
        visitors,
        bins,
        device_status,
        alerts,
        dispatches,
        ingest_self_report,
    ):
        points.extend(generate(registry, start_ms, end_ms))
    return points
