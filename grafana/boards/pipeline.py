"""Pipeline health: devices online/offline, readings stored, data freshness per device, and
ingest's own figures (messages, rejections by reason, spool, write latency, lag)."""

# ruff: noqa: S608 -- InfluxQL assembled at build time from constants and the registry, never
# from user input (Grafana substitutes its own variables).

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    TableSortByFieldState,
)
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    ValueMap,
    ValueMapping,
    ValueMappingResult,
)

from common.devices import Registry
from common.kinds import KINDS
from grafana.influxql import InfluxQL
from grafana.panels import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    alert_annotation,
    count_stat,
    dashboard,
    hide_time_column,
    layout,
    merge_frames,
    rename_column,
    single_color,
    table_target,
    tag_variable,
    target,
    thresholds,
)

UID = "facility-pipeline-health"
# Latest status of each device; a device's status message is retained, so its last value is
# what the broker would tell a newcomer.
LATEST_STATUS = (
    'SELECT LAST("online") AS "online" FROM "device_status" WHERE $timeFilter '
    'AND "kind" =~ /^$kind$/ GROUP BY "site", "kind", "device_id"'
)
# ingest reports every INGEST_STATS_INTERVAL_S (10 s by default): a finer interval only leaves
# empty buckets between its points.
STATS_MIN_INTERVAL = "10s"
# The spool's default cap is 1 GiB (INGEST_SPOOL_MAX_BYTES); half of it is the alerting point.
SPOOL_WARN_BYTES = 256 * 1024**2
SPOOL_ALERT_BYTES = 512 * 1024**2
# One field per measurement that every reading of that kind carries.
READINGS = {kind.measurement: kind.count_field for kind in KINDS.values()}


def _online_mappings() -> list[ValueMapping]:
    return [
        ValueMap(
            options={
                "true": ValueMappingResult(text="online", color=GREEN, index=0),
                "false": ValueMappingResult(text="offline", color=RED, index=1),
            }
        )
    ]


def build(registry: Registry) -> dash.Dashboard:
    device_count = len(registry.devices)
    bin_count = len(registry.bins())
    return layout(
        dashboard(
            "Pipeline health",
            UID,
            f"Is data flowing? {device_count} registered devices -> MQTT -> ingest -> InfluxDB. "
            "The ingest rows come from ingest's own ingest_stats / ingest_rejections points "
            "(every INGEST_STATS_INTERVAL_S), so no Prometheus is needed.",
            ["facility", "operations", "pipeline"],
        )
        .with_variable(
            tag_variable("kind", "Device kind", "device_status", "kind", "Kind of device.")
        )
        .annotation(alert_annotation()),
        dash.Row("Devices"),
        _devices_online(device_count),
        _bins_reporting(bin_count),
        _offline_devices(),
        _device_status(),
        dash.Row("Data flow"),
        _readings_stored(),
        _last_reading_per_device(),
        dash.Row("Ingest"),
        _message_rates(),
        _rejections_by_reason(),
        _spool_depth(),
        _write_latency(),
        _lag(),
    )


def _devices_online(device_count: int) -> stat.Panel:
    return (
        count_stat(
            "Devices online",
            f"Devices whose latest status (last 30 days) is online, of {device_count} "
            "registered; red when any is missing.",
        )
        .time_from("30d")
        .thresholds(thresholds((None, RED), (device_count, GREEN)))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .with_target(
            target(
                f'SELECT COUNT("online") AS "Online" FROM ({LATEST_STATUS}) WHERE "online" = true'
            )
        )
        .span(4)
        .height(6)
    )


def _bins_reporting(bin_count: int) -> stat.Panel:
    return (
        count_stat(
            "Bins reporting",
            f"Bins that sent a reading in the last 15 minutes (3 reporting intervals), "
            f"of {bin_count}.",
        )
        .time_from("15m")
        .thresholds(thresholds((None, RED), (0.9 * bin_count, ORANGE), (bin_count, GREEN)))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .with_target(
            target(
                'SELECT COUNT("fill") AS "Reporting" FROM (SELECT LAST("fill_pct") AS "fill" '
                'FROM "ewaste_bin" WHERE $timeFilter GROUP BY "device_id")'
            )
        )
        .span(4)
        .height(6)
    )


def _offline_devices() -> table.Panel:
    return (
        table.Panel()
        .title("Offline devices")
        .description(
            "Devices whose latest status is offline (their Last Will, or a clean stop), "
            "and since when."
        )
        .unit("none")
        .time_from("30d")
        .thresholds(single_color(RED))
        .mappings(_online_mappings())
        .with_target(
            table_target(
                f'SELECT "online" FROM ({LATEST_STATUS}) WHERE "online" = false '
                'GROUP BY "site", "kind", "device_id"'
            )
        )
        .with_transformation(merge_frames())
        .with_transformation(rename_column("Time", "Offline since"))
        .span(16)
        .height(6)
    )


def _device_status() -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title("Device status")
        .description("Online (green) and offline (red) over time, per device.")
        .unit("none")
        .thresholds(single_color(GREEN))
        .mappings(_online_mappings())
        .show_value(common.VisibilityMode.NEVER)
        .with_target(
            target(
                'SELECT LAST("online") FROM "device_status" WHERE $timeFilter AND '
                '"kind" =~ /^$kind$/ GROUP BY time($__interval), "device_id" fill(previous)',
                "$tag_device_id",
            )
        )
        .span(24)
        .height(12)
    )


def _readings_stored() -> timeseries.Panel:
    panel = (
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
    for index, (measurement, field) in enumerate(READINGS.items()):
        panel = panel.with_target(
            InfluxQL(
                f'SELECT COUNT("{field}") AS "{measurement}" FROM "{measurement}" '
                "WHERE $timeFilter GROUP BY time($__interval) fill(0)"
            )
            .ref_id(chr(ord("A") + index))
            .alias("$col")
        )
    return panel


def _last_reading_per_device() -> table.Panel:
    panel = (
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
        panel = panel.with_target(
            InfluxQL(
                f'SELECT LAST("{field}") AS "value" FROM "{measurement}" WHERE $timeFilter '
                'GROUP BY "site", "device_id"'
            )
            .ref_id(chr(ord("A") + index))
            .table()
        )
    return panel.with_transformation(merge_frames()).with_transformation(
        rename_column("Time", "Last reading")
    )


def _message_rates() -> timeseries.Panel:
    counters = ("received", "stored", "rejected")
    # Rate per replica first (a counter restarts at 0 with its process; the non-negative
    # derivative skips that drop), then summed over replicas.
    per_client = ", ".join(f'NON_NEGATIVE_DERIVATIVE(LAST("{c}"), 1s) AS "{c}"' for c in counters)
    summed = ", ".join(f'SUM("{c}") AS "{c}"' for c in counters)
    return (
        timeseries.Panel()
        .title("Messages received, stored, rejected")
        .description(
            "Messages per second through ingest, all replicas together: received from MQTT, "
            "stored in InfluxDB (excluding ingest's own points), rejected (dead-lettered). "
            "Received above stored+rejected for long means writes are failing (see the spool)."
        )
        .unit("suffix: msg/s")
        .decimals(1)
        .min(0)
        .interval(STATS_MIN_INTERVAL)
        .thresholds(single_color(BLUE))
        .with_target(
            target(
                f'SELECT {summed} FROM (SELECT {per_client} FROM "ingest_stats" '
                'WHERE $timeFilter GROUP BY time($__interval), "client_id") '
                "WHERE $timeFilter GROUP BY time($__interval) fill(null)"
            )
        )
        .span(12)
        .height(8)
    )


def _rejections_by_reason() -> table.Panel:
    return (
        table.Panel()
        .title("Rejections by reason")
        .description(
            "Messages dead-lettered in the time range per reason code, all replicas together "
            "(facility/deadletter/ingest holds each one). sink_rejected means InfluxDB refused "
            "a line: a schema clash to fix."
        )
        .unit("none")
        .decimals(0)
        .thresholds(thresholds((None, GREEN), (1, ORANGE), (100, RED)))
        .sort_by([TableSortByFieldState().display_name("Rejected").desc(True)])
        .with_target(
            table_target(
                'SELECT SUM("rejected") AS "Rejected" FROM (SELECT '
                'NON_NEGATIVE_DIFFERENCE("count") AS "rejected" FROM "ingest_rejections" '
                'WHERE $timeFilter GROUP BY "client_id", "reason") WHERE $timeFilter '
                'GROUP BY "reason"'
            )
        )
        .with_transformation(merge_frames())
        .with_transformation(hide_time_column())
        .span(12)
        .height(8)
    )


def _per_client(title: str, description: str, query: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .interval(STATS_MIN_INTERVAL)
        .min(0)
        .with_target(target(query, "$tag_client_id $col"))
        .thresholds_style(GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
        .span(8)
        .height(8)
    )


def _spool_depth() -> timeseries.Panel:
    return (
        _per_client(
            "Spool depth",
            "Bytes waiting in each ingest replica's spool (batches InfluxDB did not take, "
            "replayed in order when it answers). Above half of INGEST_SPOOL_MAX_BYTES (1 GiB "
            "by default) act; at the cap ingest stops acknowledging and the broker queues.",
            'SELECT LAST("spool_bytes") AS "spool" FROM "ingest_stats" WHERE $timeFilter '
            'GROUP BY time($__interval), "client_id" fill(previous)',
        )
        .unit("bytes")
        .thresholds(thresholds((None, GREEN), (SPOOL_WARN_BYTES, ORANGE), (SPOOL_ALERT_BYTES, RED)))
    )


def _write_latency() -> timeseries.Panel:
    return (
        _per_client(
            "Write latency",
            "Duration of ingest's writes to InfluxDB per replica: p99 and slowest over each "
            "reporting interval (failed attempts included). Seconds-long writes mean the "
            "database is struggling; at INGEST_WRITE_TIMEOUT_MS (10 s) batches are spooled.",
            'SELECT MAX("write_p99_ms") AS "p99", MAX("write_max_ms") AS "max" FROM '
            '"ingest_stats" WHERE $timeFilter GROUP BY time($__interval), "client_id" fill(null)',
        )
        .unit("ms")
        .thresholds(thresholds((None, GREEN), (1000, ORANGE), (5000, RED)))
    )


def _lag() -> timeseries.Panel:
    return (
        _per_client(
            "End-to-end lag (p99)",
            "Reading timestamp to stored and acknowledged, p99 per reporting interval and "
            "replica (estimated from histogram buckets). Target: at most 1 s; devices with "
            "slow clocks or replayed backlogs raise it.",
            'SELECT MAX("lag_p99_s") AS "p99" FROM "ingest_stats" WHERE $timeFilter '
            'GROUP BY time($__interval), "client_id" fill(null)',
        )
        .unit("s")
        .thresholds(thresholds((None, GREEN), (1, ORANGE), (10, RED)))
    )
