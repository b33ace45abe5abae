"""E-waste collection bin: discrete drop-offs by residential type and weekday, fill level from
weight and the bin's bulk density and volume, overflow time, battery drain, optional temperature.

Only a truck empties a bin (:meth:`EwasteBin.collect`).
"""

from __future__ import annotations

from common.kinds import EwasteBinParams
from devices.simulator.models.base import Fields, KindModel, ModelContext, to_datetime
from devices.simulator.models.weather import air_temperature_c
from devices.simulator.rand import poisson, stream

# Kilograms dropped per bin per day, by the housing the bin serves.
DAILY_KG = {"apartment": 14.0, "row_house": 7.0, "detached": 3.5}
# People clear out cupboards at the weekend.
WEEKDAY_FACTOR = (1.1, 0.85, 0.85, 0.9, 1.0, 1.5, 1.4)
# Relative drop-off intensity by local hour: none at night, an evening peak after work.
_HOURLY = (0, 0, 0, 0, 0, 0, 0.2, 0.5, 0.8, 0.9, 1.0, 1.0,
           1.0, 0.9, 0.9, 1.0, 1.1, 1.3, 1.6, 1.7, 1.5, 1.0, 0.5, 0.1)  # fmt: skip
_HOURLY_SUM = sum(_HOURLY)
# (item, min kg, max kg, relative frequency)
ITEMS = (
    ("bag of phones and chargers", 0.5, 2.5, 5.0),
    ("kettle", 1.0, 2.0, 3.0),
    ("laptop", 1.5, 3.0, 2.0),
    ("small appliance", 2.0, 6.0, 3.0),
    ("monitor", 4.0, 9.0, 1.5),
    ("microwave", 10.0, 16.0, 0.6),
)
_ITEM_WEIGHTS = [freq for *_, freq in ITEMS]
MEAN_ITEM_KG = sum((lo + hi) / 2 * f for _, lo, hi, f in ITEMS) / sum(_ITEM_WEIGHTS)
HOUR_MS = 3_600_000


class EwasteBin:
    """One bin. ``overflow_s`` counts simulated seconds spent full (fill 100 %)."""

    def __init__(self, ctx: ModelContext) -> None:
        d = ctx.device
        params = d.params_of(EwasteBinParams)
        self.device = d
        self.site = ctx.site
        p = ctx.params
        self._rng = stream(ctx.seed, d.id, "dropoffs")
        # Its own stream: when trucks come must not change what people drop (the hindsight
        # bound of scripts/policy_eval.py plans on the same drop-off trace as every policy).
        self._residue_rng = stream(ctx.seed, d.id, "residue")
        init = stream(ctx.seed, d.id, "initial")
        self.capacity_kg = params.capacity_kg
        self.volume_l = params.volume_l or self.capacity_kg * 3
        # Bulk density varies with what people bring (cables pack dense, monitors do not).
        self.density_kg_l = self.capacity_kg / self.volume_l * init.uniform(0.8, 1.05)
        self.full_kg = min(self.capacity_kg, self.density_kg_l * self.volume_l)
        self.daily_kg = DAILY_KG.get(params.residential_type, 7.0) * p.get("fill_rate_factor", 1.0)
        self.with_temperature = bool(p.get("temperature", 0.0))
        fill0 = ctx.initial.get("fill_pct", init.uniform(5, 80))
        self.weight_kg = self.full_kg * min(100.0, fill0) / 100
        self.overflow_kg = 0.0  # left beside a full bin; the truck takes it too
        self.battery_pct = ctx.initial.get("battery_pct", init.uniform(55, 100))
        self.overflow_s = 0.0
        self.collected_kg = 0.0
        self.collections = 0
        self._last_ms = ctx.start_ms
        self._drawn_hour = -1
        self._pending: list[tuple[int, float]] = []

    @property
    def fill_pct(self) -> float:
        return min(100.0, 100 * self.weight_kg / self.full_kg)

    def _dropoffs_per_hour(self, at_ms: int) -> float:
        local = self.site.local_time(to_datetime(at_ms))
        per_day = self.daily_kg * WEEKDAY_FACTOR[local.weekday()] / MEAN_ITEM_KG
        return per_day * _HOURLY[local.hour] / _HOURLY_SUM

    def _drop(self, kg: float) -> None:
        room = self.full_kg - self.weight_kg
        into_bin = min(room, kg)
        self.weight_kg += into_bin
        self.overflow_kg += kg - into_bin

    def _draw_hour(self, hour_ms: int) -> None:
        """The whole hour's drop-offs at once, each at its own minute: what a bin receives
        then does not depend on how often it is read or when a truck empties it."""
        n = poisson(self._rng, self._dropoffs_per_hour(hour_ms))
        drops = []
        for _ in range(n):
            _, lo, hi, _ = self._rng.choices(ITEMS, _ITEM_WEIGHTS)[0]
            drops.append((hour_ms + int(self._rng.random() * HOUR_MS), self._rng.uniform(lo, hi)))
        self._pending = sorted(drops, reverse=True)  # popped from the end, earliest first
        self._drawn_hour = hour_ms

    def _advance(self, now_ms: int) -> None:
        t = self._last_ms
        while t < now_ms:
            hour = t // HOUR_MS * HOUR_MS
            if self._drawn_hour != hour:
                self._draw_hour(hour)
            step_end = min(now_ms, hour + HOUR_MS)
            while self._pending and self._pending[-1][0] < step_end:
                at, kg = self._pending.pop()
                if at >= t:  # before the run's start (first, partial hour): not ours
                    self._drop(kg)
            if self.fill_pct >= 100.0:
                self.overflow_s += (step_end - t) / 1000
            # Sensor and modem: a slow drain plus a little per report (below).
            self.battery_pct = max(0.0, self.battery_pct - 0.15 * (step_end - t) / HOUR_MS / 24)
            t = step_end
        self._last_ms = max(self._last_ms, now_ms)

    # -- trucks ----------------------------------------------------------------------------
    def collect(self, now_ms: int, max_kg: float | None = None) -> float:
        """Empty the bin (up to ``max_kg``); a little dust and a stray cable stay behind."""
        self._advance(now_ms)
        available = self.weight_kg + self.overflow_kg
        residue = min(self.weight_kg, self._residue_rng.uniform(0.0, 0.4))
        take = available - residue
        if max_kg is not None and take > max_kg:
            take = max(0.0, max_kg)
        from_overflow = min(self.overflow_kg, take)
        self.overflow_kg -= from_overflow
        self.weight_kg = max(0.0, self.weight_kg - (take - from_overflow))
        self.collected_kg += take
        self.collections += 1
        return take

    # -- Model protocol --------------------------------------------------------------------
    def reading(self, now_ms: int) -> Fields:
        self._advance(now_ms)
        self.battery_pct = max(0.0, self.battery_pct - 0.001)
        fields: Fields = {
            "weight_kg": round(self.weight_kg, 2),
            "fill_pct": round(self.fill_pct, 1),
            "capacity_kg": self.capacity_kg,
            "battery_pct": round(self.battery_pct, 2),
        }
        if self.with_temperature:
            # Sun on a metal box: warmer than the air by day.
            temp = air_temperature_c(now_ms) + self._rng.gauss(1.5, 0.6)
            fields["temperature_c"] = round(temp, 1)
        return fields

    def reset_counters(self) -> None:
        """Bins keep no cumulative counters."""


MODEL = KindModel(EwasteBin, fault_field="fill_pct", out_of_range=("fill_pct", 130.0))
