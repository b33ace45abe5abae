"""``occupancy``: people inside a site = entries - exits summed over its gates (counter resets
handled, clamped at zero, reset daily at closing) against the site's capacity."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, time, timedelta

from common.devices import Registry
from common.payloads import Reading
from services.alerts.config import OccupancySpec
from services.alerts.rules.base import BaseRule, Signal, Verdict


@dataclass(slots=True)
class _Gate:
    entries: int
    exits: int


@dataclass(slots=True)
class _Site:
    inside: int = 0
    business_day: date | None = None
    gates: dict[str, _Gate] = field(default_factory=dict)
    last_ms: int = 0


class OccupancyRule(BaseRule):
    spec: OccupancySpec

    def __init__(self, spec: OccupancySpec, registry: Registry | None) -> None:
        super().__init__(spec, registry)
        self.sites: dict[str, _Site] = {}

    def wants(self, site: str, kind: str, device_id: str) -> bool:
        return kind == "visitor_counter" and super().wants(site, kind, device_id)

    def capacity(self, site: str) -> int | None:
        if self.spec.capacity is not None:
            return self.spec.capacity
        found = self.registry.site(site) if self.registry else None
        return found.capacity_people if found else None

    def reset_at(self, site: str) -> time | None:
        if self.spec.reset_at is not None:
            return self.spec.reset_at
        found = self.registry.site(site) if self.registry else None
        hours = found.opening_hours if found else None
        return hours.closes if hours else None

    def _business_day(self, site: str, ts_ms: int) -> date | None:
        """The day a reading counts towards: it ends at the reset time (closing)."""
        reset = self.reset_at(site)
        if reset is None:
            return None
        local = self.local_time(site, ts_ms)
        return local.date() if local.time() < reset else local.date() + timedelta(days=1)

    def observe(self, reading: Reading) -> Iterable[Signal]:
        entries = reading.fields.get("entries_total")
        exits = reading.fields.get("exits_total")
        if entries is None or exits is None:
            return ()
        site = self.sites.setdefault(reading.site, _Site())
        site.last_ms = max(site.last_ms, reading.ts_ms)
        gate = site.gates.get(reading.device_id)
        entries, exits = int(entries), int(exits)
        if gate is None:
            site.gates[reading.device_id] = _Gate(entries, exits)
            delta = 0  # a gate's first reading is its baseline, not people who came in
        else:
            # A counter below its last value restarted from 0: count from there.
            d_in = entries - gate.entries if entries >= gate.entries else entries
            d_out = exits - gate.exits if exits >= gate.exits else exits
            gate.entries, gate.exits = entries, exits
            delta = d_in - d_out
        site.inside = max(0, site.inside + delta)  # drift: never fewer than nobody
        business_day = self._business_day(reading.site, reading.ts_ms)
        if business_day is not None and business_day != site.business_day:
            if site.business_day is not None:
                site.inside = 0  # closing time: everyone has left, whatever the counters say
            site.business_day = business_day
        capacity = self.capacity(reading.site)
        if capacity is None:
            return ()
        over = capacity * self.spec.over_pct / 100
        clear = capacity * self.spec.clear_pct / 100
        if site.inside > over:
            verdict = Verdict.FIRE
        elif site.inside < clear:
            verdict = Verdict.CLEAR
        else:
            verdict = Verdict.HOLD
        message = f"{site.inside} people inside, capacity {capacity}"
        return (
            Signal(
                reading.site,
                reading.site,
                reading.kind,
                reading.ts_ms,
                verdict,
                float(site.inside),
                over,
                message,
            ),
        )

    def occupancy(self, site: str) -> int:
        found = self.sites.get(site)
        return found.inside if found else 0
