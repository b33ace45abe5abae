"""The ``Rule`` protocol every rule type implements, and the verdict a rule returns."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import Protocol

from common.devices import Registry
from common.payloads import Reading, StatusReading
from services.alerts.config import RuleSpec


class Verdict(StrEnum):
    """``fire``: the firing condition holds; ``clear``: the clear condition holds; ``hold``:
    neither (between the two thresholds of a hysteresis, or not enough data) so the alert stays
    as it is."""

    FIRE = "fire"
    CLEAR = "clear"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class Signal:
    """One rule's verdict about one device at one event time."""

    site: str
    device_id: str
    kind: str | None
    ts_ms: int
    verdict: Verdict
    value: float | None = None
    threshold: float | None = None
    message: str = ""

    @classmethod
    def about(
        cls,
        reading: Reading,
        verdict: Verdict,
        value: float | None,
        threshold: float | None,
        message: str,
    ) -> Signal:
        """A verdict on the device that sent ``reading``, at the reading's event time."""
        return cls(
            reading.site,
            reading.device_id,
            reading.kind,
            reading.ts_ms,
            verdict,
            value,
            threshold,
            message,
        )


DEFAULT_HISTORY_MAX_POINTS = 1000
"""Points a rule keeps per device (``ALERTS_HISTORY_MAX_POINTS``)."""


def thin(points: deque[tuple[int, float]], max_points: int) -> None:
    """Above ``max_points``, keep every other point, the oldest and the newest always: the
    history still spans its whole window, at half the resolution, so a device reporting
    every second costs what one reporting every few minutes does. Amortised O(1) a point."""
    if len(points) <= max_points:
        return
    newest = points[-1]
    kept = list(points)[:-1:2]
    points.clear()
    points.extend(kept)
    points.append(newest)


class Rule(Protocol):
    """A rule watches readings (and status, and time) and returns verdicts per device."""

    spec: RuleSpec
    judges_liveness: bool
    """True if the rule only cares that a device speaks (it also sees superseded readings)."""

    def wants(self, site: str, kind: str, device_id: str) -> bool: ...

    def observe(self, reading: Reading) -> Iterable[Signal]: ...

    def on_status(self, status: StatusReading) -> Iterable[Signal]: ...

    def tick(self, now_ms: int) -> Iterable[Signal]: ...

    def forget(self, site: str, device_id: str) -> None:
        """Drop what the rule learnt about a device (e.g. its bin was just emptied)."""

    def history_points(self) -> int:
        """Points of history kept over all devices (bounded by ``history_max_points`` each)."""

    def adopt(self, site: str, kind: str, device_id: str) -> None:
        """A firing alert of this rule about the device was restored (a restart): judge from
        now on as if the rule itself had fired it, so its next ``clear`` verdict comes."""


class BaseRule:
    """Selector matching and no-op defaults; rule types override what they need."""

    judges_liveness = False
    history_max_points = DEFAULT_HISTORY_MAX_POINTS
    """Set by the engine from ``ALERTS_HISTORY_MAX_POINTS``; rules with a history per device
    ``thin`` it to this."""

    def __init__(self, spec: RuleSpec, registry: Registry | None) -> None:
        self.spec = spec
        self.registry = registry

    def zone_of(self, device_id: str) -> str | None:
        return self.registry.zone_of(device_id) if self.registry else None

    def wants(self, site: str, kind: str, device_id: str) -> bool:
        return self.spec.select.matches(site, kind, device_id, self.zone_of(device_id))

    def observe(self, reading: Reading) -> Iterable[Signal]:
        return ()

    def on_status(self, status: StatusReading) -> Iterable[Signal]:
        return ()

    def tick(self, now_ms: int) -> Iterable[Signal]:
        return ()

    def forget(self, site: str, device_id: str) -> None:
        return None

    def history_points(self) -> int:
        return 0

    def adopt(self, site: str, kind: str, device_id: str) -> None:
        # Rules that judge every reading afresh (threshold, forecast, rate, ...) give their
        # verdict, clear included, without knowing what fired before.
        return None

    def site_tz(self, site: str) -> tzinfo:
        found = self.registry.site(site) if self.registry else None
        return found.tzinfo if found else UTC

    def local_time(self, site: str, ts_ms: int) -> datetime:
        return datetime.fromtimestamp(ts_ms / 1000, self.site_tz(site))


class CounterTrack:
    """A cumulative counter made monotonic across device resets (a drop means it restarted
    from zero, so everything counted before the drop is kept as an offset)."""

    __slots__ = ("last_raw", "offset")

    def __init__(self) -> None:
        self.last_raw: float | None = None
        self.offset = 0.0

    def update(self, raw: float) -> float:
        if self.last_raw is not None and raw < self.last_raw:
            self.offset += self.last_raw
        self.last_raw = raw
        return self.offset + raw
