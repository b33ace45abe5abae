"""The report's figures, read from InfluxDB with InfluxQL (the same definitions the dashboards
use, from common/queries.py), into one plain value the renderers draw."""

# ruff: noqa: S608 -- InfluxQL assembled from constants, registry ids and integer bounds.

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from common.devices import Registry
from common.influx import Row
from common.queries import collection_kg, energy_deltas, visitor_entries
from services.report.period import Period

# The city's reference figure for e-waste recycled in a year (the dashboards' gauge too).
ANNUAL_REFERENCE_T = 541.0
# Occupancy is summed over the gates per bucket of this size to find the peak: longer than a
# gate's reporting interval, so every bucket holds a reading of each gate. (No fill(previous)
# instead: InfluxDB 1.6 returns wrong sums over a subquery that fills.)
PEAK_BUCKET = "15m"

Query = Callable[[str], list[Row]]


@dataclass(frozen=True, slots=True)
class CafeDay:
    day: date
    pv_kwh: float
    load_kwh: float
    import_kwh: float
    export_kwh: float

    @property
    def net_kwh(self) -> float:
        return self.pv_kwh - self.load_kwh


@dataclass(frozen=True, slots=True)
class Cafe:
    name: str
    days: list[CafeDay]

    def total(self, name: str) -> float:
        return float(sum(getattr(d, name) for d in self.days))

    @property
    def net_kwh(self) -> float:
        return self.total("pv_kwh") - self.total("load_kwh")

    @property
    def self_sufficiency_pct(self) -> float | None:
        """Share of the load not bought from the grid."""
        load = self.total("load_kwh")
        return None if load <= 0 else 100 * (1 - self.total("import_kwh") / load)


@dataclass(frozen=True, slots=True)
class Visitors:
    name: str
    per_day: dict[date, int]
    peak_occupancy: int
    peak_at: datetime | None
    capacity: int | None

    @property
    def total(self) -> int:
        return sum(self.per_day.values())


@dataclass(frozen=True, slots=True)
class Ewaste:
    kg_by_type: dict[str, float]
    kg_per_day: dict[date, dict[str, float]]
    year_t: float
    year: int

    @property
    def total_kg(self) -> float:
        return sum(self.kg_by_type.values())

    @property
    def year_share_pct(self) -> float:
        return 100 * self.year_t / ANNUAL_REFERENCE_T


@dataclass(frozen=True, slots=True)
class Trips:
    zone: str
    completed: int
    collected_kg: float
    route_km: float | None


@dataclass(frozen=True, slots=True)
class Figures:
    period: Period
    cafe: Cafe
    visitors: Visitors
    ewaste: Ewaste
    alerts: dict[tuple[str, str], int]  # (rule, severity) -> times fired
    trips: list[Trips] = field(default_factory=list)

    @property
    def alerts_total(self) -> int:
        return sum(self.alerts.values())

    @property
    def trips_total(self) -> int:
        return sum(t.completed for t in self.trips)


def _day(ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).date()


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _site_of(registry: Registry, kind: str) -> str | None:
    devices = registry.devices_of_kind(kind)
    return devices[0].site if devices else None


def _site_name(registry: Registry, site_id: str | None, fallback: str) -> str:
    site = registry.site(site_id) if site_id else None
    return site.name if site else fallback


def read(query: Query, registry: Registry, period: Period, tz: ZoneInfo) -> Figures:
    """Every figure of the report for ``period``; raises InfluxError when a query fails."""
    tz_clause = f"tz('{tz.key}')"
    span = period.where()

    cafe_site = _site_of(registry, "energy_meter")
    cafe_where = f"{span} AND \"site\" = '{cafe_site}'"
    deltas = energy_deltas(cafe_where, "pv", "load", "import", "export")
    energy_rows = query(
        'SELECT SUM("pv") AS "pv", SUM("load") AS "load", SUM("import") AS "import", '
        f'SUM("export") AS "export" FROM ({deltas}) '
        f"WHERE {span} GROUP BY time(1d) fill(0) {tz_clause}"
    )
    cafe = Cafe(
        _site_name(registry, cafe_site, "Cafe"),
        [
            CafeDay(
                _day(r.values["time"], tz),
                _num(r.values["pv"]) / 1000,
                _num(r.values["load"]) / 1000,
                _num(r.values["import"]) / 1000,
                _num(r.values["export"]) / 1000,
            )
            for r in energy_rows
        ],
    )

    gate_site = _site_of(registry, "visitor_counter")
    gate_where = f"{span} AND \"site\" = '{gate_site}'"
    entry_rows = query(
        f'SELECT SUM("entries") AS "visitors" FROM ({visitor_entries(gate_where)}) '
        f"WHERE {span} GROUP BY time(1d) fill(0) {tz_clause}"
    )
    peak_rows = query(
        'SELECT MAX("inside") AS "peak" FROM (SELECT SUM("occupancy") AS "inside" FROM '
        f'(SELECT LAST("occupancy") AS "occupancy" FROM "visitors" WHERE {gate_where} '
        f'GROUP BY time({PEAK_BUCKET}), "device_id") WHERE {span} '
        f"GROUP BY time({PEAK_BUCKET}))"
    )
    peak = peak_rows[0].values if peak_rows else {}
    site = registry.site(gate_site) if gate_site else None
    visitors = Visitors(
        _site_name(registry, gate_site, "Art center"),
        {_day(r.values["time"], tz): int(_num(r.values["visitors"])) for r in entry_rows},
        int(_num(peak.get("peak"))),
        datetime.fromtimestamp(peak["time"] / 1000, UTC).astimezone(tz)
        if peak.get("peak") is not None
        else None,
        site.capacity_people if site else None,
    )

    # The dashboards' kg (issue 15): from the ``collection`` points, not the raw weights.
    per_type = query(collection_kg("kg", span, 'GROUP BY "residential_type"'))
    per_day = query(
        collection_kg("kg", span, f'GROUP BY time(1d), "residential_type" fill(0) {tz_clause}')
    )
    year_span = (
        f"time >= {int(period.year_start().timestamp() * 1000)}ms AND time < {period.end_ms}ms"
    )
    year_rows = query(collection_kg("kg", year_span))
    kg_per_day: dict[date, dict[str, float]] = {}
    for row in per_day:
        kind = row.tags.get("residential_type", "")
        kg_per_day.setdefault(_day(row.values["time"], tz), {})[kind] = _num(row.values["kg"])
    ewaste = Ewaste(
        {r.tags.get("residential_type", ""): _num(r.values["kg"]) for r in per_type},
        kg_per_day,
        _num(year_rows[0].values["kg"]) / 1000 if year_rows else 0.0,
        period.last_day.year,
    )

    alert_rows = query(
        'SELECT COUNT("message") AS "fired" FROM "alert" '
        f'WHERE {span} AND "state" = \'firing\' GROUP BY "rule", "severity"'
    )
    alerts = {
        (r.tags.get("rule", ""), r.tags.get("severity", "")): int(_num(r.values["fired"]))
        for r in alert_rows
    }
    trip_rows = query(
        'SELECT COUNT("dispatch_id") AS "trips", SUM("collected_kg") AS "kg", '
        f'SUM("route_km") AS "km" FROM "dispatch" WHERE {span} '
        'AND "state" = \'completed\' GROUP BY "zone"'
    )
    trips = [
        Trips(
            r.tags.get("zone", ""),
            int(_num(r.values["trips"])),
            _num(r.values["kg"]),
            _num(r.values["km"]) if r.values.get("km") is not None else None,
        )
        for r in trip_rows
    ]
    return Figures(period, cafe, visitors, ewaste, alerts, sorted(trips, key=lambda t: t.zone))
