"""InfluxQL that dashboards and the weekly report both run, so a figure means the same thing in
Grafana and on paper. Templates only: each caller supplies its own time condition (Grafana's
``$timeFilter`` or the report's fixed bounds) and grouping."""

# ruff: noqa: S608 -- templates filled with constants and caller-built conditions, never with
# user input.

from __future__ import annotations

# Weight removed from bins = the drops of each bin's weight (a truck emptying it). Drops under
# 2 kg are sensor noise or someone taking an item back, not a collection.
COLLECTED_KG = (
    'SELECT -SUM("change") AS "{alias}" FROM (SELECT DIFFERENCE("weight_kg") AS "change" '
    'FROM "ewaste_bin" WHERE {where} GROUP BY "device_id", "residential_type") '
    'WHERE {time} AND "change" < -2 {group_by}'
)


def collected_kg(alias: str, where: str, group_by: str = "", time: str = "$timeFilter") -> str:
    """Kg emptied from bins; ``where`` narrows the inner readings (and holds their time)."""
    return COLLECTED_KG.format(alias=alias, where=where, time=time, group_by=group_by).rstrip()


# Kg emptied from bins, from the ``collection`` points facility-alerts writes as each bin is
# emptied: a few points per bin per week instead of DIFFERENCE over every 5-minute weight
# (issue 15). ``where`` holds the time condition and the tag filters.
COLLECTION_KG = 'SELECT SUM("kg") AS "{alias}" FROM "collection" WHERE {where} {group_by}'


def collection_kg(alias: str, where: str, group_by: str = "") -> str:
    """Kg emptied from bins, summed from ``collection`` points."""
    return COLLECTION_KG.format(alias=alias, where=where, group_by=group_by).rstrip()


# Meter counter name in the subquery -> energy field. Differences are taken per meter (GROUP BY
# device_id) so that two meters never subtract from each other, and NON_NEGATIVE_DIFFERENCE
# drops the one negative step of a meter reset instead of counting it as a huge spike.
ENERGY_COUNTERS = {
    "pv": "pv_energy_wh",
    "load": "load_energy_wh",
    "import": "grid_import_wh",
    "export": "grid_export_wh",
}


def energy_deltas(where: str, *names: str) -> str:
    """Inner query: Wh between consecutive readings of each counter named."""
    columns = ", ".join(f'NON_NEGATIVE_DIFFERENCE("{ENERGY_COUNTERS[n]}") AS "{n}"' for n in names)
    return f'SELECT {columns} FROM "energy" WHERE {where} GROUP BY "device_id"'


def visitor_entries(where: str) -> str:
    """Inner query: entries counted between consecutive readings of each gate (resets drop)."""
    return (
        'SELECT NON_NEGATIVE_DIFFERENCE("entries_total") AS "entries" FROM "visitors" '
        f'WHERE {where} GROUP BY "device_id"'
    )
