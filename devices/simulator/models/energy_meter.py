"""Net Zero Energy Cafe energy meter: rooftop PV, cafe load, peak-shaving battery, grid.

PV follows the sun's position and a seeded cloud cover; the load follows opening hours, a base
load, kitchen peaks and seasonal HVAC; ``grid = load - PV`` plus what the battery charges or
minus what it discharges. Cumulative Wh counters integrate the powers (trapezoid rule).
"""

from __future__ import annotations

from common.kinds import EnergyMeterParams
from devices.simulator.models.base import Fields, KindModel, ModelContext, to_datetime
from devices.simulator.models.weather import (
    GWANGMYEONG_LAT,
    GWANGMYEONG_LON,
    CloudCover,
    air_temperature_c,
    clear_sky_kw_m2,
    solar_elevation_sin,
)
from devices.simulator.rand import stream

# Share of the cafe's variable load by local hour while open (customers, espresso, lights).
_BUSY_BY_HOUR = {
    9: 0.45, 10: 0.55, 11: 0.8, 12: 1.0, 13: 0.95, 14: 0.6, 15: 0.55,
    16: 0.6, 17: 0.7, 18: 0.8, 19: 0.75, 20: 0.5,
}  # fmt: skip
PV_DERATE = 0.85  # inverter, wiring and soiling losses
BATTERY_EFFICIENCY = 0.95
BATTERY_RESERVE = 0.10  # never discharge below 10 % state of charge


class EnergyMeter:
    """One cafe meter; state advances only when :meth:`reading` is called."""

    def __init__(self, ctx: ModelContext) -> None:
        d = ctx.device
        params = d.params_of(EnergyMeterParams)
        self.device = d
        self.site = ctx.site
        self._rng = stream(ctx.seed, d.id, "load")
        self._clouds = CloudCover(stream(ctx.seed, d.id, "clouds"), ctx.start_ms)
        self.lat = d.latitude if d.latitude is not None else GWANGMYEONG_LAT
        self.lon = d.longitude if d.longitude is not None else GWANGMYEONG_LON
        self.pv_peak_w = params.pv_peak_w or 20_000.0
        self.base_load_w = params.base_load_w if params.base_load_w is not None else 2_500.0
        self.peak_load_w = params.peak_load_w or 12_000.0
        self.battery_wh = (params.battery_kwh or 0.0) * 1000
        self.battery_power_w = params.battery_power_w or 0.0
        # The battery only shaves imports above this level, so the base load at night is
        # always bought from the grid (and the demand charge stays low).
        self.peak_shave_w = ctx.params.get("peak_shave_w", 0.4 * self.peak_load_w)
        init_rng = stream(ctx.seed, d.id, "initial")
        soc = ctx.initial.get("battery_soc_pct", init_rng.uniform(35, 70))
        self.soc_wh = self.battery_wh * soc / 100
        self.pv_energy_wh = ctx.initial.get("pv_energy_wh", 0.0)
        self.load_energy_wh = ctx.initial.get("load_energy_wh", 0.0)
        self.grid_import_wh = ctx.initial.get("grid_import_wh", 0.0)
        self.grid_export_wh = ctx.initial.get("grid_export_wh", 0.0)
        self._last_ms: int | None = None
        self._last: tuple[float, float, float] = (0.0, 0.0, 0.0)  # pv, load, grid

    # -- physics ---------------------------------------------------------------------------
    def pv_power_w(self, now_ms: int) -> float:
        sun = clear_sky_kw_m2(solar_elevation_sin(self.lat, self.lon, now_ms))
        return self.pv_peak_w * sun * PV_DERATE * CloudCover.pv_factor(self._clouds.at(now_ms))

    def load_power_w(self, now_ms: int) -> float:
        at = to_datetime(now_ms)
        local = self.site.local_time(at)
        is_open = self.site.is_open(at)
        busy = _BUSY_BY_HOUR.get(local.hour, 0.3) if is_open else 0.0
        span = self.peak_load_w - self.base_load_w
        load = self.base_load_w * self._rng.uniform(0.92, 1.08)
        load += 0.35 * span * busy
        if is_open and self._rng.random() < 0.25 * busy:
            # Kitchen peak: oven, dishwasher or a row of espresso shots.
            load += self._rng.uniform(0.12, 0.3) * span
        offset = local.utcoffset()
        offset_h = offset.total_seconds() / 3600 if offset is not None else 9.0
        temp = air_temperature_c(now_ms, offset_h)
        hvac_per_degree = 0.03 * span
        if temp > 24:
            load += hvac_per_degree * (temp - 24) * (1.0 if is_open else 0.15)
        elif temp < 16:
            load += 0.8 * hvac_per_degree * (16 - temp) * (1.0 if is_open else 0.25)
        return min(load, 1.1 * self.peak_load_w)

    def _battery_w(self, pv: float, load: float, dt_h: float) -> float:
        """Battery power, + charging / - discharging, within its power and energy limits."""
        if self.battery_wh <= 0 or dt_h <= 0:
            return 0.0
        surplus = pv - load
        if surplus > 0:
            room = (self.battery_wh - self.soc_wh) / BATTERY_EFFICIENCY / dt_h
            return max(0.0, min(surplus, self.battery_power_w, room))
        shave = -surplus - self.peak_shave_w
        if shave <= 0:
            return 0.0
        available = (self.soc_wh - BATTERY_RESERVE * self.battery_wh) / dt_h
        return -max(0.0, min(shave, self.battery_power_w, available))

    # -- Model protocol --------------------------------------------------------------------
    def reading(self, now_ms: int) -> Fields:
        pv = self.pv_power_w(now_ms)
        load = self.load_power_w(now_ms)
        dt_h = 0.0 if self._last_ms is None else (now_ms - self._last_ms) / 3_600_000
        battery = self._battery_w(pv, load, dt_h)
        if battery > 0:
            self.soc_wh += battery * dt_h * BATTERY_EFFICIENCY
        else:
            self.soc_wh += battery * dt_h
        self.soc_wh = min(self.battery_wh, max(0.0, self.soc_wh))
        grid = load - pv + battery
        if self._last_ms is not None:
            prev_pv, prev_load, prev_grid = self._last
            self.pv_energy_wh += (prev_pv + pv) / 2 * dt_h
            self.load_energy_wh += (prev_load + load) / 2 * dt_h
            self.grid_import_wh += (max(prev_grid, 0.0) + max(grid, 0.0)) / 2 * dt_h
            self.grid_export_wh += (max(-prev_grid, 0.0) + max(-grid, 0.0)) / 2 * dt_h
        self._last_ms, self._last = now_ms, (pv, load, grid)
        fields: Fields = {
            "pv_power_w": round(pv, 1),
            "load_power_w": round(load, 1),
            "grid_power_w": round(grid, 1),
        }
        if self.battery_wh > 0:
            fields["battery_soc_pct"] = round(100 * self.soc_wh / self.battery_wh, 2)
        fields["pv_energy_wh"] = round(self.pv_energy_wh, 1)
        fields["load_energy_wh"] = round(self.load_energy_wh, 1)
        fields["grid_import_wh"] = round(self.grid_import_wh, 1)
        fields["grid_export_wh"] = round(self.grid_export_wh, 1)
        return fields

    def reset_counters(self) -> None:
        self.pv_energy_wh = self.load_energy_wh = 0.0
        self.grid_import_wh = self.grid_export_wh = 0.0


MODEL = KindModel(EnergyMeter, fault_field="pv_power_w", out_of_range=("battery_soc_pct", 140.0))
