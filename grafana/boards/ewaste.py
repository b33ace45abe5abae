"""E-waste collection: fill of every bin, bins to empty, predicted full, tonnes collected."""

# ruff: noqa: S608 -- InfluxQL assembled at build time from constants and the registry, never
# from user input (Grafana substitutes its own variables).

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, gauge, geomap, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders.common import TableSortByFieldState
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import geomap as geomap_model
from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

from common.devices import Registry
from common.queries import collection_kg
from grafana import geomap as layers
from grafana.panels import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    TZ_CLAUSE,
    YELLOW,
    alert_annotation,
    choice_variable,
    count_stat,
    dashboard,
    hide_time_column,
    kg_per_day,
    last_value,
    layout,
    merge_frames,
    single_color,
    table_target,
    tag_variable,
    target,
    thresholds,
    transformation,
)

UID = "facility-ewaste-collection"
SITE = "ewaste"
# The city's reference figure for e-waste recycled in a year, which this year is measured against.
ANNUAL_REFERENCE_T = 541
WHERE = '$timeFilter AND "zone" =~ /^$zone$/ AND "residential_type" =~ /^$residential_type$/'
FILL_STEPS = ((None, GREEN), (60, YELLOW), (80, ORANGE), (95, RED))

# The map shows the bins now, whatever range the dashboard shows: their latest reading of the
# last week (a bin silent longer than that is off the map and in "Pipeline health").
MAP_WHERE = (
    'time > now() - 7d AND "zone" =~ /^$zone$/ AND "residential_type" =~ /^$residential_type$/'
)
# Bins report every 5 minutes: no reading in the last three 5-minute buckets (10 to 15 min,
# the newest bucket being partial) means stale, or offline: an offline bin sends nothing, so
# it turns stale too, as the alerts' device_offline rule (15 min) sees it.
STALE_BUCKET, STALE_BUCKETS = "5m", 3
STALE_AFTER = "15m"
LATEST_PER_BIN = (
    'SELECT LAST("fill_pct") AS "fill" FROM "ewaste_bin" WHERE {where} GROUP BY "device_id"'
)


def build(registry: Registry) -> dash.Dashboard:
    bin_count = len(registry.bins())
    zones = ", ".join(registry.zones())

    return layout(
        dashboard(
            "E-waste collection",
            UID,
            f"{bin_count} smart e-waste bins in the collection zones {zones}: how full they are, "
            "which need a truck, and how much has been recycled.",
            ["facility", "ewaste", "collection"],
        )
        .with_variable(
            tag_variable("zone", "Zone", "ewaste_bin", "zone", "Collection zone of the bins.")
        )
        .with_variable(
            tag_variable(
                "residential_type",
                "Housing",
                "ewaste_bin",
                "residential_type",
                "Housing the bins serve: apartment, row_house or detached.",
            )
        )
        .with_variable(
            choice_variable(
                "fill_threshold",
                "Full at (%)",
                ["60", "70", "80", "90"],
                "80",
                "Fill level from which a bin counts as needing collection.",
            )
        )
        .annotation(alert_annotation(f"AND \"site\" = '{SITE}'")),
        dash.Row("Bins now"),
        _bins_to_collect(),
        _average_fill(),
        _e_waste_waiting_in_bins(),
        _recycled_this_year(),
        _collected_in_range(),
        _bin_map(registry),
        _fill_level_of_every_bin(),
        _bins_by_fill_level(),
        _fill_level_by_zone(),
        dash.Row("Collected"),
        _weight_collected_per_day_by_housing_type(),
        _collected_by_housing_type(),
        _open_dispatches(),
    )


def _bins_to_collect() -> stat.Panel:
    return (
        count_stat("Bins to collect", "Bins at or above the chosen fill level ($fill_threshold %).")
        .thresholds(thresholds((None, GREEN), (1, ORANGE), (5, RED)))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .with_target(
            target(
                'SELECT COUNT("fill") AS "Bins to collect" FROM ('
                + LATEST_PER_BIN.format(where=WHERE)
                + ') WHERE "fill" >= $fill_threshold'
            )
        )
        .span(4)
        .height(5)
    )


def _average_fill() -> stat.Panel:
    return (
        stat.Panel()
        .title("Average fill")
        .description("Mean of the latest fill level of the selected bins.")
        .unit("percent")
        .decimals(0)
        .thresholds(thresholds(*FILL_STEPS))
        .reduce_options(last_value())
        .with_target(
            target(
                'SELECT MEAN("fill") AS "Average fill" FROM ('
                + LATEST_PER_BIN.format(where=WHERE)
                + ")"
            )
        )
        .span(4)
        .height(5)
    )


def _e_waste_waiting_in_bins() -> stat.Panel:
    return (
        stat.Panel()
        .title("E-waste waiting in bins")
        .description("Total weight in the selected bins now: what the trucks would bring in.")
        .unit("masskg")
        .decimals(0)
        .thresholds(single_color(BLUE))
        .reduce_options(last_value())
        .with_target(
            target(
                'SELECT SUM("kg") AS "In bins" FROM (SELECT LAST("weight_kg") AS "kg" '
                f'FROM "ewaste_bin" WHERE {WHERE} GROUP BY "device_id")'
            )
        )
        .span(4)
        .height(5)
    )


def _recycled_this_year() -> gauge.Panel:
    return (
        gauge.Panel()
        .title(f"Recycled this year vs {ANNUAL_REFERENCE_T} t")
        .description(
            "E-waste emptied from all bins since 1 January (sum of the weight drops when "
            f"trucks empty them), against the city's reference of {ANNUAL_REFERENCE_T} t "
            "a year."
        )
        .unit("masst")
        .decimals(1)
        .min(0)
        .max(ANNUAL_REFERENCE_T)
        .time_from("now/y")
        .thresholds(
            thresholds((None, RED), (0.5 * ANNUAL_REFERENCE_T, ORANGE), (ANNUAL_REFERENCE_T, GREEN))
        )
        .reduce_options(last_value())
        .with_target(
            target(
                'SELECT "collected" / 1000 AS "Recycled" FROM ('
                + collection_kg("collected", "$timeFilter")
                + ")"
            )
        )
        .span(6)
        .height(5)
    )


def _collected_in_range() -> stat.Panel:
    return (
        stat.Panel()
        .title("Collected in range")
        .description("Weight emptied from the selected bins in the selected time range.")
        .unit("masskg")
        .decimals(0)
        .no_value("0")
        .thresholds(single_color(GREEN))
        .reduce_options(last_value())
        .with_target(target(collection_kg("Collected", WHERE)))
        .span(6)
        .height(5)
    )


def _bin_map(registry: Registry) -> geomap.Panel:
    depot = registry.depot
    located = '"device_id", "latitude", "longitude"'
    return (
        geomap.Panel()
        .title("Bins, depot and today's routes")
        .description(
            "Every bin at its place, coloured by its latest fill level (orange from 80 %, red "
            f"from 95 %); a grey cross marks a bin with no reading for {STALE_AFTER} (stale or "
            "offline). The square is the depot; lines are the routes of trucks dispatched "
            "today, in driving order."
        )
        .unit("percent")
        .min(0)
        .max(100)
        .thresholds(thresholds(*FILL_STEPS))
        .time_from("now/d")
        .view(geomap.MapViewConfig().id("fit").all_layers(True).padding(5).max_zoom(16))
        .basemap(common_builders.MapLayerOptions().type("default").name("Basemap"))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True))
        .tooltip(geomap.TooltipOptions().mode(geomap_model.TooltipMode.DETAILS))
        .layers(
            [
                layers.route("Routes today", "D", BLUE),
                layers.markers(
                    "Bins (fill)",
                    "A",
                    symbol=layers.CIRCLE,
                    size=8,
                    color=GREEN,
                    color_field="fill",
                ),
                layers.markers(
                    f"No reading for {STALE_AFTER}",
                    "B",
                    symbol=layers.CROSS,
                    size=12,
                    color="#616161",
                ),
                layers.markers(
                    "Depot",
                    "C",
                    symbol=layers.SQUARE,
                    size=14,
                    color="purple",
                ),
            ]
        )
        .with_target(
            table_target(
                'SELECT LAST("fill_pct") AS "fill", LAST("weight_kg") AS "weight" '
                f'FROM "ewaste_bin" WHERE {MAP_WHERE} GROUP BY "device_id", "zone", '
                '"latitude", "longitude"'
            )
        )
        .with_target(
            # Readings per 5 minutes, averaged over the last three buckets (the newest one is
            # partial): 0 means none for 10 to 15 minutes. fill(0) gives a silent bin its
            # empty buckets up to now; a time condition on the outer queries would not (it
            # narrows the inner range too, and a bin with no point in it has no series).
            table_target(
                f'SELECT "recent" FROM (SELECT LAST("recent") AS "recent" FROM (SELECT '
                f'MOVING_AVERAGE(COUNT("fill_pct"), {STALE_BUCKETS}) AS "recent" FROM '
                f'"ewaste_bin" WHERE {MAP_WHERE} GROUP BY time({STALE_BUCKET}), {located} '
                f'fill(0)) GROUP BY {located}) WHERE "recent" = 0 GROUP BY {located}',
                ref_id="B",
            )
        )
        .with_target(
            # The depot is configuration, not a measurement: its coordinates from the registry
            # ride on any recent reading (x * 0 + constant), one row, any InfluxQL version.
            table_target(
                f'SELECT LAST("fill_pct") * 0 + {depot.latitude!r} AS "latitude", '
                f'LAST("fill_pct") * 0 + {depot.longitude!r} AS "longitude" '
                f'FROM "ewaste_bin" WHERE time > now() - 7d',
                ref_id="C",
            )
        )
        .with_target(
            table_target(
                'SELECT "latitude", "longitude", "stop", "device_id", "dispatch_id" '
                'FROM "dispatch_stop" WHERE $timeFilter AND "zone" =~ /^$zone$/ '
                'GROUP BY "truck_id"',
                ref_id="D",
            )
        )
        .with_transformation(
            # Bin coordinates arrive as tag values (text): the map needs numbers.
            transformation(
                "convertFieldType",
                {
                    "conversions": [
                        {"targetField": "latitude", "destinationType": "number"},
                        {"targetField": "longitude", "destinationType": "number"},
                    ],
                    "fields": {},
                },
            )
        )
        .span(24)
        .height(14)
    )


def _fill_level_of_every_bin() -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title("Fill level of every bin")
        .description("Latest fill level per bin; orange from 80 %, red from 95 %.")
        .unit("percent")
        .min(0)
        .max(100)
        .decimals(0)
        .thresholds(thresholds(*FILL_STEPS))
        .orientation(common.VizOrientation.VERTICAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(last_value())
        .with_target(
            target(
                f'SELECT LAST("fill_pct") FROM "ewaste_bin" WHERE {WHERE} GROUP BY "device_id"',
                "$tag_device_id",
            )
        )
        .span(24)
        .height(7)
    )


def _bins_by_fill_level() -> table.Panel:
    return (
        table.Panel()
        .title("Bins by fill level")
        .description(
            "Every selected bin, fullest first, with the time it will be full at the rate it "
            "filled over the last 6 hours (empty when it is not filling)."
        )
        .unit("none")
        .thresholds(thresholds(*FILL_STEPS))
        .sort_by([TableSortByFieldState().display_name("Fill").desc(True)])
        .override_by_name(
            "Fill",
            [
                DynamicConfigValue(id_val="unit", value="percent"),
                DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ],
        )
        .override_by_name("Weight", [DynamicConfigValue(id_val="unit", value="masskg")])
        .override_by_name("Full in", [DynamicConfigValue(id_val="unit", value="h")])
        .with_target(
            table_target(
                'SELECT LAST("fill_pct") AS "Fill", LAST("weight_kg") AS "Weight" '
                f'FROM "ewaste_bin" WHERE {WHERE} '
                'GROUP BY "device_id", "zone", "residential_type"'
            )
        )
        .with_target(
            # The outer query has no time filter: InfluxDB 1.x drops everything when its
            # lower bound falls inside the first bucket of the inner GROUP BY time().
            table_target(
                'SELECT (100 - LAST("fill")) / MEAN("rate") AS "Full in" FROM (SELECT '
                'NON_NEGATIVE_DERIVATIVE(LAST("fill_pct"), 1h) AS "rate", LAST("fill_pct") '
                'AS "fill" FROM "ewaste_bin" WHERE time > now() - 6h AND "zone" =~ /^$zone$/ '
                'AND "residential_type" =~ /^$residential_type$/ '
                'GROUP BY time(30m), "device_id") GROUP BY "device_id"',
                ref_id="B",
            )
        )
        .with_transformation(hide_time_column())
        .with_transformation(merge_frames())
        .span(12)
        .height(10)
    )


def _fill_level_by_zone() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Fill level by zone")
        .description("Average fill of the bins in each zone; drops are collections.")
        .unit("percent")
        .min(0)
        .max(100)
        .thresholds(thresholds(*FILL_STEPS))
        .with_target(
            target(
                f'SELECT MEAN("fill_pct") FROM "ewaste_bin" WHERE {WHERE} '
                'GROUP BY time($__interval), "zone" fill(null)',
                "$tag_zone",
            )
        )
        .span(12)
        .height(10)
    )


def _weight_collected_per_day_by_housing_type() -> timeseries.Panel:
    return (
        kg_per_day(
            "Weight collected per day by housing type",
            "E-waste emptied from bins per day (Korean days), by the housing the bins serve.",
            collection_kg(
                alias="collected",
                where=WHERE,
                group_by=f'GROUP BY time(1d), "residential_type" fill(0) {TZ_CLAUSE}',
            ),
            "$tag_residential_type",
        )
        .span(12)
        .height(9)
    )


def _collected_by_housing_type() -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title("Collected by housing type")
        .description("Weight emptied from bins in the selected range, by housing type.")
        .unit("masskg")
        .decimals(0)
        .thresholds(single_color(GREEN))
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .reduce_options(last_value())
        .with_target(
            target(
                collection_kg(
                    alias="collected", where=WHERE, group_by='GROUP BY "residential_type"'
                ),
                "$tag_residential_type",
            )
        )
        .span(4)
        .height(9)
    )


def _open_dispatches() -> table.Panel:
    return (
        table.Panel()
        .title("Open dispatches")
        .description("The latest dispatch of every truck that is not completed or cancelled yet.")
        .unit("none")
        .thresholds(single_color(BLUE))
        .override_by_name("Planned load", [DynamicConfigValue(id_val="unit", value="masskg")])
        .with_target(
            table_target(
                'SELECT "dispatch_id" AS "Dispatch", "state" AS "State", "stops" AS "Stops", '
                '"est_load_kg" AS "Planned load" FROM (SELECT LAST("state") AS "state", '
                '"dispatch_id", "stops", "est_load_kg" FROM "dispatch" WHERE $timeFilter '
                'AND "zone" =~ /^$zone$/ GROUP BY "truck_id", "zone") '
                "WHERE \"state\" != 'completed' AND \"state\" != 'cancelled' "
                'GROUP BY "truck_id", "zone"'
            )
        )
        .with_transformation(merge_frames())
        .span(8)
        .height(9)
    )
