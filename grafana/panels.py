"""Small shared pieces of every dashboard: thresholds, variables, the alert annotation."""

# ruff: noqa: S608 -- InfluxQL assembled at build time from constants and the registry, never
# from user input (Grafana substitutes its own variables).

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions, StackingConfig
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from grafana.influxql import InfluxQL, datasource_ref

GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"

# Grafana refreshes every dashboard this often; devices report every 1-5 minutes.
REFRESH = "1m"
# Every facility is in Gwangmyeong, so "today" and "per day" mean Korean days for everyone.
TIMEZONE = "Asia/Seoul"
TZ_CLAUSE = "tz('Asia/Seoul')"


def dashboard(
    title: str, uid: str, description: str, tags: list[str], since: str = "now-24h"
) -> dash.Dashboard:
    """A facility dashboard: Korean time, the common refresh, one crosshair across panels."""
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(tags)
        .timezone(TIMEZONE)
        .time(since, "now")
        .refresh(REFRESH)
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )


def site_dashboard(
    title: str, uid: str, description: str, topic: str, site: str, devices: dash.QueryVariable
) -> dash.Dashboard:
    """The dashboard of one facility site: its devices to pick from and its own alerts."""
    return (
        dashboard(title, uid, description, ["facility", topic, site])
        .with_variable(devices)
        .annotation(alert_annotation(f"AND \"site\" = '{site}'"))
    )


def layout(
    board: dash.Dashboard, *items: dash.Row | cogbuilder.Builder[model.Panel]
) -> dash.Dashboard:
    """The board with its rows and panels added top to bottom, in the order listed."""
    for item in items:
        board = board.with_row(item) if isinstance(item, dash.Row) else board.with_panel(item)
    return board


def target(query: str, alias: str = "$col", ref_id: str = "A") -> InfluxQL:
    """A query whose series are named by ``alias``: ``$col`` (the column) or ``$tag_<key>``."""
    return InfluxQL(query).ref_id(ref_id).alias(alias)


def table_target(query: str, ref_id: str = "A") -> InfluxQL:
    """A query shown as rows of a table."""
    return InfluxQL(query).ref_id(ref_id).table()


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (the base colour)."""
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def single_color(color: str = GREEN) -> dash.ThresholdsConfig:
    """No warning levels: the value is informative, not good or bad."""
    return thresholds((None, color))


def tag_variable(
    name: str, label: str, measurement: str, key: str, description: str
) -> dash.QueryVariable:
    """A multi-value drop-down of one tag's values, 'All' by default, used as ``=~ /^$name$/``."""
    query = f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{key}"'
    return (
        dash.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(datasource_ref())
        .query(query)
        .definition(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def site_device_variable(
    name: str, label: str, measurement: str, site: str, description: str
) -> dash.QueryVariable:
    """A drop-down of the devices (``device_id``) of one site in ``measurement``."""
    return tag_variable(name, label, measurement, "device_id", description).query(
        f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "device_id" WHERE "site" = \'{site}\''
    )


def choice_variable(
    name: str, label: str, values: Sequence[str], default: str, description: str
) -> dash.CustomVariable:
    """A single-value drop-down of fixed choices (e.g. a fill-level threshold)."""
    return (
        dash.CustomVariable(name)
        .label(label)
        .description(description)
        .values(",".join(values))
        .current(model.VariableOption(selected=True, text=default, value=default))
        .options([model.VariableOption(selected=v == default, text=v, value=v) for v in values])
    )


def alert_annotation(where: str = "") -> dash.AnnotationQuery:
    """Firing alerts (from the ``alert`` measurement) as markers on every time series panel.

    ``where`` narrows them to the dashboard's sites, e.g. ``AND "site" = 'nzc'``.
    """
    query = (
        'SELECT "message", "rule", "severity", "site", "device_id" FROM "alert" '
        f"WHERE $timeFilter AND \"state\" = 'firing' {where}".rstrip()
    )
    return (
        dash.AnnotationQuery()
        .name("Alerts")
        .datasource(datasource_ref())
        .enable(True)
        .icon_color(RED)
        .target(
            InfluxQL(query)
            .ref_id("Anno")
            .annotation_columns(text="message", tags="rule,severity,site,device_id")
        )
    )


def row(title: str) -> dash.Row:
    return dash.Row(title)


def transformation(transform_id: str, options: dict[str, object]) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val=transform_id, options=options)


def hide_time_column() -> model.DataTransformerConfig:
    """Tables of latest values have a meaningless time (epoch 0 for several selectors)."""
    return transformation("organize", {"excludeByName": {"Time": True}})


def merge_frames() -> model.DataTransformerConfig:
    """Per-series frames (one per GROUP BY tag set) into one table."""
    return transformation("merge", {})


def last_value() -> ReduceDataOptions:
    """Stats show the latest value of each series (not Grafana's mean over the range)."""
    return ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def rename_column(old: str, new: str) -> model.DataTransformerConfig:
    return transformation("organize", {"renameByName": {old: new}})


def count_stat(title: str, description: str) -> stat.Panel:
    """A whole-number stat of the latest value where no rows means none counted (0)."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit("none")
        .decimals(0)
        .no_value("0")
        .reduce_options(last_value())
    )


def bar_chart(
    title: str, description: str, stacking: common.StackingMode | None = None
) -> timeseries.Panel:
    """A time series drawn as solid bars (per-interval or per-day totals), optionally stacked."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
    )
    if stacking is not None:
        panel = panel.stacking(StackingConfig().mode(stacking))
    return panel


def kg_per_day(title: str, description: str, query: str, alias: str) -> timeseries.Panel:
    """Weight collected per day over the last 30 days, stacked by the tag ``alias`` names."""
    return (
        bar_chart(title, description, common.StackingMode.NORMAL)
        .unit("masskg")
        .decimals(0)
        .time_from("30d")
        .thresholds(single_color(GREEN))
        .with_target(target(query, alias))
    )
