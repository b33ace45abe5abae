"""A simulated month (June 2026, 28 Korean days) of the cafe, the art center, the bins, alerts
and trips, with figures known in advance, for the weekly report's tests.

Shaped so each figure the report prints can be worked out here in plain Python from the same
points (``expected``): power is constant within each 15-minute step and zero around midnight,
so no day boundary splits an energy or visitor count; the bins are emptied on known days.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from common.devices import Registry
from common.kinds import EwasteBinParams
from common.schema import Point, collection_point

SEOUL = ZoneInfo("Asia/Seoul")
FIRST_DAY = date(2026, 6, 1)  # a Monday
DAYS = 28
STEP_MS = 15 * 60_000
HOUR_MS = 3_600_000
PEAK_AT = datetime(2026, 6, 27, 14, 0, tzinfo=SEOUL)  # a Saturday
PEAK = (120, 67)  # main gate, east gate


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _local(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(SEOUL)


START_MS = _ms(datetime.combine(FIRST_DAY, datetime.min.time(), SEOUL))
END_MS = START_MS + DAYS * 24 * HOUR_MS


def pv_factor(day: date) -> float:
    """How sunny a day is: 0.2 .. 1.2 of the 6 kW the panels give between 10:00 and 16:00."""
    return 0.2 + 0.2 * (day.toordinal() % 6)


@dataclass
class Truth:
    """Per Korean day, what the generated points add up to."""

    pv_wh: dict[date, float] = field(default_factory=lambda: defaultdict(float))
    load_wh: dict[date, float] = field(default_factory=lambda: defaultdict(float))
    import_wh: dict[date, float] = field(default_factory=lambda: defaultdict(float))
    export_wh: dict[date, float] = field(default_factory=lambda: defaultdict(float))
    entries: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    # (ts_ms, residential_type, kg) of every emptying
    collections: list[tuple[int, str, float]] = field(default_factory=list)
    fired: list[tuple[int, str, str]] = field(default_factory=list)  # (ts, rule, severity)
    trips: list[tuple[int, str, float, float]] = field(default_factory=list)  # ts, zone, kg, km


def month(registry: Registry) -> tuple[list[Point], Truth]:
    points: list[Point] = []
    truth = Truth()
    _energy(registry, points, truth)
    _visitors(registry, points, truth)
    _bins(registry, points, truth)
    _alerts_and_trips(registry, points, truth)
    return points, truth


def _energy(registry: Registry, points: list[Point], truth: Truth) -> None:
    meter = registry.devices_of_kind("energy_meter")[0]
    counters = dict.fromkeys(
        ("pv_energy_wh", "load_energy_wh", "grid_import_wh", "grid_export_wh"), 0.0
    )
    for ts in range(START_MS, END_MS, STEP_MS):
        # The step ending at ts: its power is the power at its start.
        begun = _local(ts - STEP_MS)
        hour = begun.hour
        pv = 6000.0 * pv_factor(begun.date()) if 10 <= hour < 16 else 0.0
        load = 2000.0 if 9 <= hour < 21 else 0.0
        grid = load - pv
        day = _local(ts).date()
        step = {"pv_energy_wh": pv / 4, "load_energy_wh": load / 4,
                "grid_import_wh": max(grid, 0) / 4, "grid_export_wh": max(-grid, 0) / 4}  # fmt: skip
        for name, wh in step.items():
            counters[name] += wh
        if ts > START_MS:  # the first reading has nothing before it to differ from
            truth.pv_wh[day] += step["pv_energy_wh"]
            truth.load_wh[day] += step["load_energy_wh"]
            truth.import_wh[day] += step["grid_import_wh"]
            truth.export_wh[day] += step["grid_export_wh"]
        fields: dict[str, float | int | bool | str] = {
            "pv_power_w": pv, "load_power_w": load, "grid_power_w": grid,
            "battery_soc_pct": 50.0, **counters,
        }  # fmt: skip
        points.append(("energy", {"site": meter.site, "device_id": meter.id}, fields, ts))


def _visitors(registry: Registry, points: list[Point], truth: Truth) -> None:
    gates = registry.devices_of_kind("visitor_counter")[:2]
    for index, gate in enumerate(gates):
        entries = exits = 0
        for ts in range(START_MS, END_MS, STEP_MS):
            begun = _local(ts - STEP_MS)
            open_now = begun.weekday() != 0 and 10 <= begun.hour < 18  # closed on Mondays
            arrived = (8 if index == 0 else 3) + begun.day % 3 if open_now else 0
            now = _local(ts)
            if now == PEAK_AT:
                inside = PEAK[index]
                arrived += max(0, inside - (entries + arrived - exits))  # a school class
            elif open_now:
                inside = (30 if index == 0 else 12) + now.hour
            else:
                inside = 0
            entries += arrived
            if ts > START_MS:
                truth.entries[now.date()] += arrived
            exits = max(exits, entries - inside)
            fields: dict[str, float | int | bool | str] = {
                "entries_total": entries, "exits_total": exits, "occupancy": entries - exits,
            }  # fmt: skip
            points.append(("visitors", {"site": gate.site, "device_id": gate.id}, fields, ts))


def _bins(registry: Registry, points: list[Point], truth: Truth) -> None:
    for index, device in enumerate(registry.bins()):
        params = device.params_of(EwasteBinParams)
        capacity = params.capacity_kg
        rate = capacity / (24 * (4 + index % 5))  # full in 4..8 days
        tags = {
            "site": device.site,
            "device_id": device.id,
            **registry.tags_for(device.site, device.id),
        }
        weight = capacity * 0.1
        for ts in range(START_MS, END_MS, HOUR_MS):
            now = _local(ts)
            if weight >= 0.85 * capacity and now.hour == 11:  # a truck empties it late morning
                truth.collections.append((ts, params.residential_type, weight - 0.5))
                # What facility-alerts writes when it sees this emptying.
                site_tags = registry.tags_for(device.site, device.id)
                kg = round(weight - 0.5, 3)
                points.append(collection_point(device.site, device.id, site_tags, kg, ts))
                weight = 0.5
            elif now.hour == 20 and now.day % 4 == index % 4 and weight > 3:
                weight -= 1.0  # someone takes an item back: not a collection
            else:
                weight = min(capacity, weight + rate)
            fields: dict[str, float | int | bool | str] = {
                "weight_kg": round(weight, 3), "fill_pct": round(100 * weight / capacity, 2),
            }  # fmt: skip
            points.append(("ewaste_bin", tags, fields, ts))
    # Rounding to 3 decimals can move a drop by a gram; the truth uses what was written.
    truth.collections = [(ts, kind, round(kg, 3)) for ts, kind, kg in truth.collections]


def _alerts_and_trips(registry: Registry, points: list[Point], truth: Truth) -> None:
    bins = registry.bins()
    for day in range(DAYS):
        base = START_MS + day * 24 * HOUR_MS
        for n in range(day % 3 + 1):  # 1..3 bin_full alerts a day
            device = bins[(day + n) % len(bins)]
            ts = base + (9 + n) * HOUR_MS
            tags = {
                "rule": "bin_full",
                "severity": "warning",
                "site": device.site,
                "device_id": device.id,
            }
            points.append(("alert", tags, {"state": "firing", "value": 91.0, "threshold": 90.0,
                                           "message": f"{device.id} is 91% full"}, ts))  # fmt: skip
            points.append(("alert", tags, {"state": "resolved", "value": 3.0, "threshold": 90.0,
                                           "message": f"{device.id} emptied"}, ts + HOUR_MS))  # fmt: skip
            truth.fired.append((ts, "bin_full", "warning"))
        if day % 7 == 5:  # a low battery at the cafe on Saturdays
            meter = registry.devices_of_kind("energy_meter")[0]
            ts = base + 20 * HOUR_MS
            tags = {
                "rule": "battery_low",
                "severity": "critical",
                "site": meter.site,
                "device_id": meter.id,
            }
            points.append(("alert", tags, {"state": "firing", "value": 9.0, "threshold": 10.0,
                                           "message": "battery below 10%"}, ts))  # fmt: skip
            truth.fired.append((ts, "battery_low", "critical"))
        zones = registry.zones()
        for n, zone in enumerate(zones[: day % 2 + 1]):  # one or two trips a day
            truck = registry.trucks[n % len(registry.trucks)]
            planned = base + (10 + n) * HOUR_MS
            kg, km = 400.0 + 10 * day + n, 12.5 + n
            dispatch_id = f"d-{day:02d}-{n}"
            for state, offset, collected in (("planned", 0, None), ("en_route", 600_000, None),
                                             ("completed", 5_400_000, kg)):  # fmt: skip
                fields: dict[str, float | int | bool | str] = {
                    "dispatch_id": dispatch_id, "stops": 5, "est_load_kg": 420.0,
                    "route_km": km, "state": state,
                }  # fmt: skip
                if collected is not None:
                    fields["collected_kg"] = collected
                points.append(
                    ("dispatch", {"zone": zone, "truck_id": truck.id}, fields, planned + offset)
                )
            truth.trips.append((planned + 5_400_000, zone, kg, km))


def in_days(ts_ms: int, first: date, last: date) -> bool:
    return first <= _local(ts_ms).date() <= last


def week(last: date) -> tuple[date, date]:
    return last - timedelta(days=6), last
