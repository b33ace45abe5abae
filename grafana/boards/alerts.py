"""Alerts & dispatch: what is firing now, what fired before, trucks sent and how fast."""

# ruff: noqa: S608 -- InfluxQL assembled at build time from constants and the registry, never
# from user input (Grafana substitutes its own variables).

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.builders.common import TableSortByFieldState
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    ValueMap,
    ValueMappingResult,
)

from common.devices import Registry
from grafana.panels import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    TZ_CLAUSE,
    alert_annotation,
    bar_chart,
    count_stat,
    dashboard,
    kg_per_day,
    layout,
    merge_frames,
    single_color,
    table_target,
    tag_variable,
    target,
    thresholds,
    transformation,
)

UID = "facility-alerts-dispatch"
ALERTS_WHERE = '$timeFilter AND "site" =~ /^$site$/ AND "severity" =~ /^$severity$/'
# An alert is active when the latest event of its (rule, site, device) is "firing". Severity is
# read from that event rather than grouped by, so an escalated alert is one alert, not two.
LATEST_ALERT = (
    'SELECT LAST("state") AS "state", "severity", "value", "threshold", "message" FROM "alert" '
    'WHERE $timeFilter AND "site" =~ /^$site$/ GROUP BY "rule", "site", "device_id"'
)
SEVERITY_COLORS = {"critical": RED, "warning": ORANGE, "info": BLUE}


def _severity_mappings() -> list[ValueMap]:
    return [
        ValueMap(
            options={
                name: ValueMappingResult(color=color, index=index)
                for index, (name, color) in enumerate(SEVERITY_COLORS.items())
            }
        )
    ]


def build(registry: Registry) -> dash.Dashboard:
    del registry  # every name here comes from the data
    return layout(
        dashboard(
            "Alerts & dispatch",
            UID,
            "Alerts raised by the alerts service on all facilities, and the collection trucks it "
            "dispatched.",
            ["facility", "alerts", "dispatch"],
            since="now-7d",
        )
        .with_variable(tag_variable("site", "Site", "alert", "site", "Facility of the alert."))
        .with_variable(
            tag_variable("severity", "Severity", "alert", "severity", "info, warning or critical.")
        )
        .annotation(alert_annotation('AND "site" =~ /^$site$/')),
        dash.Row("Now"),
        _active_alert_count(),
        _active_alerts(),
        dash.Row("History"),
        _alerts_raised(),
        _alert_history(),
        dash.Row("Dispatch"),
        _collections_completed(),
        _collected_by_trucks_per_day(),
        _time_to_collection(),
        _dispatches(),
    )


def _active_alert_count() -> stat.Panel:
    return (
        count_stat("Active alerts", "Alerts whose latest event (last 30 days) is 'firing'.")
        .time_from("30d")
        .thresholds(thresholds((None, GREEN), (1, ORANGE), (5, RED)))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .with_target(
            target(
                f'SELECT COUNT("state") AS "Active" FROM ({LATEST_ALERT}) '
                'WHERE "state" = \'firing\' AND "severity" =~ /^$severity$/'
            )
        )
        .span(4)
        .height(8)
    )


def _active_alerts() -> table.Panel:
    return (
        table.Panel()
        .title("Active alerts")
        .description(
            "Every alert still firing, with the reading that triggered it; newest first. "
            "Looks back 30 days so long-running alerts are not missed."
        )
        .unit("none")
        .time_from("30d")
        .thresholds(single_color(RED))
        .sort_by([TableSortByFieldState().display_name("Since").desc(True)])
        .override_by_name(
            "severity",
            [
                DynamicConfigValue(id_val="mappings", value=_severity_mappings()),
                DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
            ],
        )
        .with_target(
            table_target(
                'SELECT "severity", "message", "value", "threshold" '
                f"FROM ({LATEST_ALERT}) WHERE \"state\" = 'firing' "
                'AND "severity" =~ /^$severity$/ GROUP BY "rule", "site", "device_id"'
            )
        )
        .with_transformation(merge_frames())
        .with_transformation(transformation("organize", {"renameByName": {"Time": "Since"}}))
        .span(20)
        .height(8)
    )


def _alerts_raised() -> timeseries.Panel:
    return (
        bar_chart(
            "Alerts raised",
            "Alerts that started firing per interval, by severity.",
            common.StackingMode.NORMAL,
        )
        .unit("none")
        .decimals(0)
        .thresholds(single_color(ORANGE))
        .with_target(
            target(
                f'SELECT COUNT("state") FROM "alert" WHERE {ALERTS_WHERE} '
                'AND "state" = \'firing\' GROUP BY time($__interval), "severity" fill(0)',
                "$tag_severity",
            )
        )
        .span(12)
        .height(8)
    )


def _alert_history() -> table.Panel:
    return (
        table.Panel()
        .title("Alert history")
        .description("Every alert event in the range, newest first (up to 500).")
        .unit("none")
        .thresholds(single_color(BLUE))
        .with_target(
            table_target(
                'SELECT "state", "rule", "severity", "site", "device_id", "message", "value", '
                f'"threshold" FROM "alert" WHERE {ALERTS_WHERE} ORDER BY time DESC LIMIT 500'
            )
        )
        .span(12)
        .height(8)
    )


def _collections_completed() -> stat.Panel:
    return (
        count_stat(
            "Collections completed",
            "Dispatches that reached 'completed' in the range, and what they brought in.",
        )
        .thresholds(single_color(GREEN))
        .override_by_name("Collected", [DynamicConfigValue(id_val="unit", value="masskg")])
        .with_target(
            target(
                'SELECT COUNT("dispatch_id") AS "Completed", '
                'SUM("collected_kg") AS "Collected" FROM "dispatch" '
                "WHERE $timeFilter AND \"state\" = 'completed'"
            )
        )
        .span(6)
        .height(8)
    )


def _collected_by_trucks_per_day() -> timeseries.Panel:
    return (
        kg_per_day(
            "Collected by trucks per day",
            "Weight reported by trucks at completed dispatches, per zone and day.",
            'SELECT SUM("collected_kg") FROM "dispatch" WHERE $timeFilter AND '
            f'"state" = \'completed\' GROUP BY time(1d), "zone" fill(0) {TZ_CLAUSE}',
            "$tag_zone",
        )
        .span(18)
        .height(8)
    )


def _time_to_collection() -> table.Panel:
    return (
        table.Panel()
        .title("Time to collection")
        .description(
            "Per dispatch: from planned to completed (Grafana groups the status events by "
            "dispatch id and takes the span of their times)."
        )
        .unit("none")
        .thresholds(thresholds((None, GREEN), (4 * 3600_000, ORANGE), (8 * 3600_000, RED)))
        .override_by_name(
            "Time to collection", [DynamicConfigValue(id_val="unit", value="dtdurationms")]
        )
        .with_target(
            table_target(
                'SELECT "dispatch_id", "state", "truck_id", "zone" FROM "dispatch" '
                "WHERE $timeFilter AND (\"state\" = 'planned' OR \"state\" = 'completed')"
            )
        )
        .with_transformation(
            transformation(
                "groupBy",
                {
                    "fields": {
                        "dispatch_id": {"aggregations": [], "operation": "groupby"},
                        "truck_id": {"aggregations": [], "operation": "groupby"},
                        "zone": {"aggregations": [], "operation": "groupby"},
                        "Time": {"aggregations": ["range", "last"], "operation": "aggregate"},
                        "state": {"aggregations": ["last"], "operation": "aggregate"},
                    }
                },
            )
        )
        .with_transformation(
            transformation(
                "organize",
                {
                    "renameByName": {
                        "Time (range)": "Time to collection",
                        "Time (last)": "Completed",
                        "state (last)": "State",
                    }
                },
            )
        )
        .span(12)
        .height(9)
    )


def _dispatches() -> table.Panel:
    return (
        table.Panel()
        .title("Dispatches")
        .description("Every dispatch status event in the range, newest first (up to 500).")
        .unit("none")
        .thresholds(single_color(BLUE))
        .override_by_name("est_load_kg", [DynamicConfigValue(id_val="unit", value="masskg")])
        .override_by_name("collected_kg", [DynamicConfigValue(id_val="unit", value="masskg")])
        .with_target(
            table_target(
                'SELECT "dispatch_id", "state", "truck_id", "zone", "stops", "est_load_kg", '
                '"collected_kg" FROM "dispatch" WHERE $timeFilter ORDER BY time DESC LIMIT 500'
            )
        )
        .span(12)
        .height(9)
    )
