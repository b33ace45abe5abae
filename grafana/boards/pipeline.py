"""Pipeline health: devices online/offline, readings stored, data freshness per device."""

# ruff: noqa: S608 -- InfluxQL assembled at build time from constants and the registry, never
# from user input (Grafana substitutes its own variables).

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import TableSortByFieldState
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    ValueMap,
    ValueMapping,
    ValueMappingResult,
)

from common.devices import Registry
from grafana.influxql import InfluxQL
from grafana.panels import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    alert_annotation,
    count_stat,
    dashboard,
    merge_frames,
    rename_column,
    single_color,
    tag_variable,
    thresholds,
)

UID = "facility-pipeline-health"
# Latest status of each device; a device's status message is retained, so its last value is
# what the broker would tell a newcomer.
LATEST_STATUS = (
    'SELECT LAST("online") AS "online" FROM "device_status" WHERE $timeFilter '
    'AND "kind" =~ /^$kind$/ GROUP BY "site", "kind", "device_id"'
)
# One field per measurement that every reading of that kind carries.
READINGS = {"energy": "load_power_w", "visitors": "entries_total", "ewaste_bin": "fill_pct"}


def build(registry: Registry) -> dash.Dashboard:
    device_count = len(registry.devices)
    bin_count = len(registry.bins())
    online_mappings: list[ValueMapping] = [
        ValueMap(
            options={
                "true": ValueMappingResult(text="online", color=GREEN, index=0),
                "false": ValueMappingResult(text="offline", color=RED, index=1),
            }
        )
    ]
    stored = (
        timeseries.Panel()
        .title("Readings stored per interval")
        .description(
            "Telemetry points in InfluxDB per interval, by measurement: a drop means devices "
            "stopped sending or the ingest service stopped writing."
        )
        .unit("none")
        .decimals(0)
        .thresholds(single_color(BLUE))
        .span(12)
        .height(8)
    )
    freshness = (
        table.Panel()
        .title("Last reading per device")
        .description("When each device last delivered a reading; the stalest come first.")
        .unit("none")
        .thresholds(single_color(BLUE))
        .sort_by([TableSortByFieldState().display_name("Last reading").desc(False)])
        .span(12)
        .height(8)
    )
    for index, (measurement, field) in enumerate(READINGS.items()):
        ref = chr(ord("A") + index)
        stored = stored.with_target(
            InfluxQL(
                f'SELECT COUNT("{field}") AS "{measurement}" FROM "{measurement}" '
                "WHERE $timeFilter GROUP BY time($__interval) fill(0)"
            )
            .ref_id(ref)
            .alias("$col")
        )
        freshness = freshness.with_target(
            InfluxQL(
                f'SELECT LAST("{field}") AS "value" FROM "{measurement}" WHERE $timeFilter '
                'GROUP BY "site", "device_id"'
            )
            .ref_id(ref)
            .table()
        )
    freshness = freshness.with_transformation(merge_frames()).with_transformation(
        rename_column("Time", "Last reading")
    )

    return (
        dashboard(
            "Pipeline health",
            UID,
            f"Is data flowing? {device_count} registered devices -> MQTT -> ingest -> InfluxDB. "
            "The services' own counters (rejections, spool, write latency) are on their "
            "/metrics endpoints.",
            ["facility", "operations", "pipeline"],
        )
        .with_variable(
            tag_variable("kind", "Device kind", "device_status", "kind", "Kind of device.")
        )
        .annotation(alert_annotation())
        .with_row(dash.Row("Devices"))
        .with_panel(
            count_stat(
                "Devices online",
                f"Devices whose latest status (last 30 days) is online, of {device_count} "
                "registered; red when any is missing.",
            )
            .time_from("30d")
            .thresholds(thresholds((None, RED), (device_count, GREEN)))
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .with_target(
                InfluxQL(
                    f'SELECT COUNT("online") AS "Online" FROM ({LATEST_STATUS}) '
                    'WHERE "online" = true'
                )
                .ref_id("A")
                .alias("$col")
            )
            .span(4)
            .height(6)
        )
        .with_panel(
            count_stat(
                "Bins reporting",
                f"Bins that sent a reading in the last 15 minutes (3 reporting intervals), "
                f"of {bin_count}.",
            )
            .time_from("15m")
            .thresholds(thresholds((None, RED), (0.9 * bin_count, ORANGE), (bin_count, GREEN)))
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .with_target(
                InfluxQL(
                    'SELECT COUNT("fill") AS "Reporting" FROM (SELECT LAST("fill_pct") AS "fill" '
                    'FROM "ewaste_bin" WHERE $timeFilter GROUP BY "device_id")'
                )
                .ref_id("A")
                .alias("$col")
            )
            .span(4)
            .height(6)
        )
        .with_panel(
            table.Panel()
            .title("Offline devices")
            .description(
                "Devices whose latest status is offline (their Last Will, or a clean stop), "
                "and since when."
            )
            .unit("none")
            .time_from("30d")
            .thresholds(single_color(RED))
            .mappings(online_mappings)
            .with_target(
                InfluxQL(
                    f'SELECT "online" FROM ({LATEST_STATUS}) WHERE "online" = false '
                    'GROUP BY "site", "kind", "device_id"'
                )
                .ref_id("A")
                .table()
            )
            .with_transformation(merge_frames())
            .with_transformation(rename_column("Time", "Offline since"))
            .span(16)
            .height(6)
        )
        .with_panel(
            statetimeline.Panel()
            .title("Device status")
            .description("Online (green) and offline (red) over time, per device.")
            .unit("none")
            .thresholds(single_color(GREEN))
            .mappings(online_mappings)
            .show_value(common.VisibilityMode.NEVER)
            .with_target(
                InfluxQL(
                    'SELECT LAST("online") FROM "device_status" WHERE $timeFilter AND '
                    '"kind" =~ /^$kind$/ GROUP BY time($__interval), "device_id" fill(previous)'
                )
                .ref_id("A")
                .alias("$tag_device_id")
            )
            .span(24)
            .height(12)
        )
        .with_row(dash.Row("Data flow"))
        .with_panel(stored)
        .with_panel(freshness)
    )
