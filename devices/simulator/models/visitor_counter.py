"""Upcycle Art Center gate counter: arrivals by opening hours and day of week, group visits,
exits after a dwell time, and cumulative counts with a small counting error.
"""

from __future__ import annotations

import heapq
import math
from datetime import datetime, timedelta

from common.kinds import VisitorCounterParams
from devices.simulator.models.base import Fields, KindModel, ModelContext, to_datetime
from devices.simulator.rand import poisson, stream

MINUTE_MS = 60_000
# Relative arrival intensity by local hour while open: a lunchtime and mid-afternoon peak.
_ARRIVALS_BY_HOUR = {10: 0.6, 11: 0.9, 12: 1.0, 13: 1.2, 14: 1.3, 15: 1.2, 16: 0.9, 17: 0.4}


class VisitorCounter:
    """One gate. Visitors leave through the gate they came in (what the counter can see)."""

    def __init__(self, ctx: ModelContext) -> None:
        self.device = ctx.device
        self.site = ctx.site
        p = ctx.params
        self._rng = stream(ctx.seed, ctx.device.id, "visitors")
        self._count_rng = stream(ctx.seed, ctx.device.id, "counting")
        # This gate's share of the site's visitors, by the capacity it is planned for.
        self.share = p.get("gate_share", 1.0)
        self.daily_weekday = p.get("daily_visitors_weekday", 450.0) * self.share
        self.daily_weekend = p.get("daily_visitors_weekend", 900.0) * self.share
        self.group_prob = p.get("group_visits_per_day", 0.4)
        self.miss_rate = p.get("count_miss_rate", 0.01)
        self.double_rate = p.get("count_double_rate", 0.005)
        self.dwell_median_min = p.get("dwell_median_min", 45.0)
        self.capacity = ctx.device.params_of(VisitorCounterParams).capacity_people
        self.entries_total = int(ctx.initial.get("entries_total", 0))
        self.exits_total = int(ctx.initial.get("exits_total", 0))
        self.inside = 0  # true number of people inside through this gate
        self.true_entries = 0
        self.true_exits = 0
        self._departures: list[int] = []  # heap of leave times (ms)
        self._groups: list[tuple[int, int, float]] = []  # heap of (at_ms, size, dwell_min)
        self._planned_days: set[str] = set()
        self._last_ms = ctx.start_ms

    # -- scripted events -------------------------------------------------------------------
    def add_group(self, at_ms: int, size: int, dwell_min: float = 90.0) -> None:
        heapq.heappush(self._groups, (at_ms, size, dwell_min))

    def _plan_day(self, local: datetime) -> None:
        """Once per local day: maybe a benchmarking delegation of 20-40 people."""
        key = local.date().isoformat()
        if key in self._planned_days:
            return
        self._planned_days.add(key)
        hours = self.site.opening_hours
        if hours is None or self._rng.random() >= self.group_prob:
            return
        opens = local.replace(hour=hours.opens.hour, minute=hours.opens.minute, second=0)
        start = opens + timedelta(minutes=self._rng.uniform(30, 300))
        if not self.site.is_open(start):
            return
        at_ms = int(start.timestamp() * 1000)
        self.add_group(at_ms, self._rng.randint(20, 40), self._rng.uniform(60, 120))

    # -- physics ---------------------------------------------------------------------------
    def _closing_ms(self, at_ms: int) -> int:
        local = self.site.local_time(to_datetime(at_ms))
        hours = self.site.opening_hours
        if hours is None:
            return at_ms + 24 * 3_600_000
        close = local.replace(hour=hours.closes.hour, minute=hours.closes.minute, second=0)
        return int(close.timestamp() * 1000)

    def _counted(self, n: int) -> int:
        """What the sensor counts for ``n`` real passages: some missed, some doubled."""
        counted = 0
        for _ in range(n):
            r = self._count_rng.random()
            if r < self.miss_rate:
                continue
            counted += 2 if r < self.miss_rate + self.double_rate else 1
        return counted

    def _enter(self, at_ms: int, n: int, dwell_min: float | None) -> None:
        closing = self._closing_ms(at_ms)
        for _ in range(n):
            if dwell_min is None:
                stay = self.dwell_median_min * math.exp(self._rng.gauss(0, 0.5))
            else:
                stay = dwell_min * self._rng.uniform(0.9, 1.1)
            heapq.heappush(self._departures, min(closing, at_ms + int(stay * MINUTE_MS)))
        self.inside += n
        self.true_entries += n
        self.entries_total += self._counted(n)

    def _leave_until(self, now_ms: int) -> None:
        gone = 0
        while self._departures and self._departures[0] <= now_ms:
            heapq.heappop(self._departures)
            gone += 1
        self.inside -= gone
        self.true_exits += gone
        self.exits_total += self._counted(gone)

    def _arrival_rate_per_min(self, at_ms: int) -> float:
        at = to_datetime(at_ms)
        if not self.site.is_open(at):
            return 0.0
        local = self.site.local_time(at)
        daily = self.daily_weekend if local.weekday() >= 5 else self.daily_weekday
        weight = _ARRIVALS_BY_HOUR.get(local.hour, 0.3)
        return daily * weight / sum(_ARRIVALS_BY_HOUR.values()) / 60

    def _advance(self, now_ms: int) -> None:
        # Step minute by minute so arrivals follow the hourly curve and closing time exactly.
        t = self._last_ms
        while t < now_ms:
            step_end = min(now_ms, t + MINUTE_MS)
            self._plan_day(self.site.local_time(to_datetime(t)))
            while self._groups and self._groups[0][0] < step_end:
                at_ms, size, dwell = heapq.heappop(self._groups)
                self._enter(max(at_ms, t), size, dwell)
            rate = self._arrival_rate_per_min(t)
            if rate > 0:
                self._enter(t, poisson(self._rng, rate * (step_end - t) / MINUTE_MS), None)
            self._leave_until(step_end)
            t = step_end
        self._last_ms = max(self._last_ms, now_ms)

    # -- Model protocol --------------------------------------------------------------------
    def reading(self, now_ms: int) -> Fields:
        self._advance(now_ms)
        return {
            "entries_total": self.entries_total,
            "exits_total": self.exits_total,
            "occupancy": max(0, self.entries_total - self.exits_total),
        }

    def reset_counters(self) -> None:
        self.entries_total = 0
        self.exits_total = 0


MODEL = KindModel(VisitorCounter, fault_field="entries_total", out_of_range=("entries_total", -5))
