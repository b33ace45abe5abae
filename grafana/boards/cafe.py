"""Net Zero Energy Cafe: PV vs load vs grid, today's balance, self-sufficiency, battery, peaks."""

# ruff: noqa: S608 -- InfluxQL assembled at build time from constants and the registry, never
# from user input (Grafana substitutes its own variables).

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, gauge, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig
from grafana_foundation_sdk.models import common

from common.devices import Registry
from common.kinds import EnergyMeterParams
from common.queries import energy_deltas
from grafana.influxql import InfluxQL
from grafana.panels import (
    BLUE,
    GREEN,
    ORANGE,
    RED,
    TZ_CLAUSE,
    YELLOW,
    bar_chart,
    last_value,
    layout,
    single_color,
    site_dashboard,
    site_device_variable,
    target,
    thresholds,
)

UID = "facility-nzc-energy"
SITE = "nzc"
WHERE = f'$timeFilter AND "site" = \'{SITE}\' AND "device_id" =~ /^$meter$/'


def _energy_kwh(select: str, *names: str, group_by: str = "") -> str:
    """Outer query over the counter deltas; ``select`` uses SUM("<name>") in Wh."""
    inner = energy_deltas(WHERE, *names)
    return f"SELECT {select} FROM ({inner}) WHERE $timeFilter {group_by}".rstrip()


def _power_now(
    title: str, field: str, description: str, steps: dash.ThresholdsConfig
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit("watt")
        .decimals(1)
        .thresholds(steps)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(last_value())
        .with_target(InfluxQL(f'SELECT LAST("{field}") FROM "energy" WHERE {WHERE}').ref_id("A"))
        .span(4)
        .height(5)
    )


def build(registry: Registry) -> dash.Dashboard:
    meters = [d for d in registry.devices_of_kind("energy_meter") if d.site == SITE]
    params = [m.params_of(EnergyMeterParams) for m in meters]
    pv_peak_w = max((p.pv_peak_w or 0.0 for p in params), default=0.0) or 20_000.0
    peak_load_w = max((p.peak_load_w or 0.0 for p in params), default=0.0) or 12_000.0
    site = registry.site(SITE)
    name = site.name if site is not None else "Net Zero Energy Cafe"

    return layout(
        site_dashboard(
            f"{name} — energy",
            UID,
            "Rooftop PV, cafe load, grid exchange and battery of the Net Zero Energy Cafe. "
            "Net zero means the PV produces at least what the cafe uses.",
            "energy",
            SITE,
            site_device_variable(
                "meter", "Meter", "energy", SITE, "Energy meters of the cafe (device_id)."
            ),
        ),
        dash.Row("Right now"),
        _pv_production(pv_peak_w),
        _cafe_load(peak_load_w),
        _grid_exchange(),
        _battery(),
        _net_balance_today(),
        _self_sufficiency_and_self_consumption_today(),
        dash.Row("Power"),
        _pv_vs_load_vs_grid(),
        _battery_state_of_charge(),
        dash.Row("Energy"),
        _energy_per_day(),
        _grid_import_and_export_per_hour(),
        _peak_demand(peak_load_w),
    )


def _pv_production(pv_peak_w: float) -> stat.Panel:
    return _power_now(
        "PV production",
        "pv_power_w",
        f"Latest PV output; the array peaks near {pv_peak_w / 1000:g} kW on a clear day.",
        single_color(YELLOW),
    )


def _cafe_load(peak_load_w: float) -> stat.Panel:
    return _power_now(
        "Cafe load",
        "load_power_w",
        "Latest power drawn by the cafe. Orange above 80 % of the planned peak load.",
        thresholds((None, GREEN), (0.8 * peak_load_w, ORANGE), (peak_load_w, RED)),
    )


def _grid_exchange() -> stat.Panel:
    return _power_now(
        "Grid exchange",
        "grid_power_w",
        "Positive: importing from the grid. Negative: exporting surplus PV (green).",
        thresholds((None, GREEN), (0, ORANGE)),
    )


def _battery() -> gauge.Panel:
    return (
        gauge.Panel()
        .title("Battery")
        .description("State of charge of the cafe battery. Below 20 % it cannot cover the evening.")
        .unit("percent")
        .min(0)
        .max(100)
        .thresholds(thresholds((None, RED), (20, ORANGE), (40, GREEN)))
        .reduce_options(last_value())
        .with_target(
            InfluxQL(f'SELECT LAST("battery_soc_pct") FROM "energy" WHERE {WHERE}').ref_id("A")
        )
        .span(4)
        .height(5)
    )


def _net_balance_today() -> stat.Panel:
    net = _energy_kwh('(SUM("pv") - SUM("load")) / 1000 AS "net"', "pv", "load")
    return (
        stat.Panel()
        .title("Net balance today")
        .description(
            "PV energy produced minus energy used since midnight (from the meter counters). "
            "Positive (green) means the cafe is net zero so far today."
        )
        .unit("kwatth")
        .decimals(1)
        .time_from("now/d")
        .thresholds(thresholds((None, RED), (0, GREEN)))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .reduce_options(last_value())
        .with_target(InfluxQL(net).ref_id("A"))
        .span(4)
        .height(5)
    )


def _self_sufficiency_and_self_consumption_today() -> bargauge.Panel:
    sufficiency = _energy_kwh(
        '100 * (1 - SUM("import") / SUM("load")) AS "self_sufficiency"', "import", "load"
    )
    consumption = _energy_kwh(
        '100 * (1 - SUM("export") / SUM("pv")) AS "self_consumption"', "export", "pv"
    )
    return (
        bargauge.Panel()
        .title("Self-sufficiency and self-consumption today")
        .description(
            "Self-sufficiency: share of the load not bought from the grid. "
            "Self-consumption: share of the PV used on site rather than exported."
        )
        .unit("percent")
        .min(0)
        .max(100)
        .decimals(0)
        .time_from("now/d")
        .thresholds(thresholds((None, RED), (50, ORANGE), (80, GREEN)))
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(last_value())
        .with_target(target(sufficiency, "Self-sufficiency"))
        .with_target(target(consumption, "Self-consumption", "B"))
        .span(4)
        .height(5)
    )


def _pv_vs_load_vs_grid() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("PV vs load vs grid")
        .description(
            "Average power per interval. Grid above zero is import, below zero export; "
            "red markers are alerts for the cafe."
        )
        .unit("watt")
        .thresholds(single_color(GREEN))
        .fill_opacity(10)
        .with_target(
            target(
                'SELECT MEAN("pv_power_w") AS "PV", MEAN("load_power_w") AS "Load", '
                f'MEAN("grid_power_w") AS "Grid" FROM "energy" WHERE {WHERE} '
                "GROUP BY time($__interval) fill(null)"
            )
        )
        .span(16)
        .height(9)
    )


def _battery_state_of_charge() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Battery state of charge")
        .description("Battery charge over time; the dashed band marks the 20 % reserve.")
        .unit("percent")
        .min(0)
        .max(100)
        .thresholds(thresholds((None, RED), (20, GREEN)))
        .thresholds_style(GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
        .with_target(
            target(
                f'SELECT MEAN("battery_soc_pct") AS "Battery" FROM "energy" WHERE {WHERE} '
                "GROUP BY time($__interval) fill(null)"
            )
        )
        .span(8)
        .height(9)
    )


def _energy_per_day() -> timeseries.Panel:
    per_day = _energy_kwh(
        'SUM("pv") / 1000 AS "PV", SUM("load") / 1000 AS "Load", '
        'SUM("import") / 1000 AS "Grid import", SUM("export") / 1000 AS "Grid export"',
        "pv",
        "load",
        "import",
        "export",
        group_by=f"GROUP BY time(1d) fill(0) {TZ_CLAUSE}",
    )
    return (
        bar_chart(
            "Energy per day",
            "Daily totals (Korean days) from the meter counters; meter resets do not count.",
        )
        .unit("kwatth")
        .decimals(1)
        .time_from("7d")
        .thresholds(single_color(GREEN))
        .with_target(target(per_day))
        .span(12)
        .height(9)
    )


def _grid_import_and_export_per_hour() -> timeseries.Panel:
    per_hour = _energy_kwh(
        'SUM("import") / 1000 AS "Grid import", SUM("export") / 1000 AS "Grid export"',
        "import",
        "export",
        group_by=f"GROUP BY time(1h) fill(0) {TZ_CLAUSE}",
    )
    return (
        bar_chart(
            "Grid import and export per hour",
            "Energy bought from and sold to the grid, hour by hour.",
            common.StackingMode.NONE,
        )
        .unit("kwatth")
        .decimals(2)
        .thresholds(single_color(BLUE))
        .with_target(target(per_hour))
        .span(6)
        .height(9)
    )


def _peak_demand(peak_load_w: float) -> stat.Panel:
    # Electricity tariffs bill the highest 15-minute average, not the highest single reading.
    # No time filter on the outer query: InfluxDB 1.x returns nothing when its lower bound
    # falls inside the first 15-minute bucket of the inner query (Grafana's is never aligned).
    demand = (
        'SELECT MAX("demand") AS "Peak load (15 min)" FROM (SELECT MEAN("load_power_w") '
        f'AS "demand" FROM "energy" WHERE {WHERE} GROUP BY time(15m), "device_id")'
    )
    grid_peak = (
        'SELECT MAX("demand") AS "Peak grid import (15 min)" FROM (SELECT MEAN("grid_power_w") '
        f'AS "demand" FROM "energy" WHERE {WHERE} GROUP BY time(15m), "device_id")'
    )
    return (
        stat.Panel()
        .title("Peak demand")
        .description(
            "Highest 15-minute average of the load and of grid import in the selected range "
            "— the figure the electricity tariff bills."
        )
        .unit("watt")
        .decimals(1)
        .thresholds(thresholds((None, GREEN), (0.8 * peak_load_w, ORANGE), (peak_load_w, RED)))
        .reduce_options(last_value())
        .with_target(target(demand))
        .with_target(target(grid_peak, "$col", "B"))
        .span(6)
        .height(9)
    )
