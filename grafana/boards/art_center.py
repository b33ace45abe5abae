"""Upcycle Art Center: occupancy vs capacity per gate and in total, visitors per hour and day."""

# ruff: noqa: S608 -- InfluxQL assembled at build time from constants and the registry, never
# from user input (Grafana substitutes its own variables).

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import bargauge, gauge, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    StackingConfig,
    TableSortByFieldState,
)
from grafana_foundation_sdk.models import common

from common.devices import Device, Registry, Site
from common.kinds import VisitorCounterParams
from common.queries import visitor_entries
from grafana.influxql import InfluxQL
from grafana.panels import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    TZ_CLAUSE,
    bar_chart,
    count_stat,
    last_value,
    layout,
    rename_column,
    single_color,
    site_dashboard,
    site_device_variable,
    table_target,
    target,
    thresholds,
)

UID = "facility-uac-visitors"
SITE = "uac"
WHERE = f'$timeFilter AND "site" = \'{SITE}\' AND "device_id" =~ /^$gate$/'

# Entries per reading of each gate's counter; a counter that restarts at 0 loses one step
# instead of producing a negative count.
ENTRIES = visitor_entries(WHERE)


def _capacity_steps(capacity: float) -> dash.ThresholdsConfig:
    return thresholds((None, GREEN), (0.8 * capacity, ORANGE), (capacity, RED))


def _opening_hours(site: Site | None) -> str:
    if site is None or site.opening_hours is None:
        return ""
    oh = site.opening_hours
    closed = f", closed {', '.join(oh.closed_days)}" if getattr(oh, "closed_days", None) else ""
    return f" Open {oh.opens}-{oh.closes}{closed}."


def build(registry: Registry) -> dash.Dashboard:
    site = registry.site(SITE)
    gates = [d for d in registry.devices_of_kind("visitor_counter") if d.site == SITE]
    capacity = float(
        (site.capacity_people if site else None)
        or sum(g.params_of(VisitorCounterParams).capacity_people or 0 for g in gates)
        or 300
    )
    name = site.name if site is not None else "Upcycle Art Center"

    return layout(
        site_dashboard(
            f"{name} — visitors",
            UID,
            f"Visitors of the Upcycle Art Center, counted at its entrances.{_opening_hours(site)}",
            "visitors",
            SITE,
            site_device_variable(
                "gate", "Gate", "visitors", SITE, "Visitor counters (one per entrance)."
            ),
        ),
        dash.Row("Right now"),
        _visitors_inside(capacity),
        _occupancy_per_gate(gates, capacity),
        _visitors_today(),
        _busiest_hours_this_week(),
        dash.Row("Over time"),
        _occupancy_by_gate(capacity),
        _visitors_per_hour(),
        _visitors_per_day(),
    )


def _visitors_inside(capacity: float) -> gauge.Panel:
    return (
        gauge.Panel()
        .title("Visitors inside")
        .description(
            f"People in the building now (all gates), against its capacity of {capacity:g}."
        )
        .unit("none")
        .min(0)
        .max(capacity)
        .decimals(0)
        .thresholds(_capacity_steps(capacity))
        .reduce_options(last_value())
        .with_target(
            target(
                'SELECT SUM("inside") AS "Visitors inside" FROM (SELECT LAST("occupancy") AS '
                f'"inside" FROM "visitors" WHERE {WHERE} GROUP BY "device_id")'
            )
        )
        .span(5)
        .height(6)
    )


def _occupancy_per_gate(gates: Sequence[Device], capacity: float) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title("Occupancy per gate vs capacity")
        .description(
            "People inside, counted at each entrance, as a share of the area that entrance serves."
            + "".join(
                f" {g.name or g.id}: {g.params_of(VisitorCounterParams).capacity_people} people."
                for g in gates
            )
        )
        .unit("percent")
        .min(0)
        .max(100)
        .decimals(0)
        .thresholds(thresholds((None, GREEN), (80, ORANGE), (100, RED)))
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.LCD)
        .reduce_options(last_value())
        .span(8)
        .height(6)
    )
    for index, gate in enumerate(gates):
        serves = gate.params_of(VisitorCounterParams).capacity_people or capacity
        panel = panel.with_target(
            InfluxQL(
                f'SELECT 100 * LAST("occupancy") / {serves:g} AS '
                f'"{gate.name or gate.id}" FROM "visitors" WHERE $timeFilter AND "site" = '
                f"'{SITE}' AND \"device_id\" = '{gate.id}'"
            )
            .ref_id(chr(ord("A") + index))
            .alias("$col")
        )
    return panel


def _visitors_today() -> stat.Panel:
    return (
        count_stat("Visitors today", "People who came in since midnight, all gates.")
        .time_from("now/d")
        .thresholds(single_color(BLUE))
        .with_target(
            target(f'SELECT SUM("entries") AS "Visitors" FROM ({ENTRIES}) WHERE $timeFilter')
        )
        .span(5)
        .height(6)
    )


def _busiest_hours_this_week() -> table.Panel:
    return (
        table.Panel()
        .title("Busiest hours this week")
        .description("The five hours with the most people coming in over the last 7 days.")
        .time_from("7d")
        .unit("none")
        .thresholds(single_color(BLUE))
        .sort_by([TableSortByFieldState().display_name("Visitors").desc(True)])
        .with_transformation(rename_column("Time", "Hour"))
        .with_target(
            table_target(
                'SELECT TOP("visitors", 5) AS "Visitors" FROM (SELECT SUM("entries") AS '
                f'"visitors" FROM ({ENTRIES}) WHERE $timeFilter GROUP BY time(1h) {TZ_CLAUSE})'
            )
        )
        .span(6)
        .height(6)
    )


def _occupancy_by_gate(capacity: float) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Occupancy by gate")
        .description(
            f"People inside, stacked by the gate that counted them; the dashed line is the "
            f"building's capacity ({capacity:g})."
        )
        .unit("none")
        .min(0)
        .decimals(0)
        .thresholds(thresholds((None, GREEN), (capacity, RED)))
        .thresholds_style(GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
        .fill_opacity(30)
        .stacking(StackingConfig().mode(common.StackingMode.NORMAL))
        .with_target(
            target(
                f'SELECT MAX("occupancy") FROM "visitors" WHERE {WHERE} '
                'GROUP BY time($__interval), "device_id" fill(previous)',
                "$tag_device_id",
            )
        )
        .span(12)
        .height(9)
    )


def _visitors_per_hour() -> timeseries.Panel:
    return (
        bar_chart(
            "Visitors per hour",
            "People coming in per hour, by gate (busiest hours stand out).",
            common.StackingMode.NORMAL,
        )
        .unit("none")
        .decimals(0)
        .thresholds(single_color(BLUE))
        .with_target(
            target(
                f'SELECT SUM("entries") FROM ({ENTRIES}) WHERE $timeFilter '
                f'GROUP BY time(1h), "device_id" fill(0) {TZ_CLAUSE}',
                "$tag_device_id",
            )
        )
        .span(12)
        .height(9)
    )


def _visitors_per_day() -> timeseries.Panel:
    return (
        bar_chart("Visitors per day", "People coming in per day (Korean days), last 30 days.")
        .unit("none")
        .decimals(0)
        .time_from("30d")
        .thresholds(single_color(BLUE))
        .with_target(
            target(
                f'SELECT SUM("entries") AS "Visitors" FROM ({ENTRIES}) WHERE $timeFilter '
                f"GROUP BY time(1d) fill(0) {TZ_CLAUSE}"
            )
        )
        .span(24)
        .height(8)
    )
