"""When trucks may work and when bins may be reached: crew shifts (working days, blocks such as
08:00-12:00 and 13:00-17:00 around a lunch break), a longest trip, and per-bin access windows
(a school yard after classes, a market before it opens).

Plain values in local time; the trucks (``devices.simulator.trucks``) and the policy
evaluation's hindsight bound read the same objects, so both obey one set of rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(hh_mm: str) -> int:
    hh, mm = hh_mm.split(":")
    value = int(hh) * 60 + int(mm)
    if not 0 <= value <= 24 * 60:
        raise ValueError(f"{hh_mm!r} is not a time of day")
    return value


@dataclass(frozen=True, slots=True)
class Window:
    """Minutes since local midnight, [open, close)."""

    open_min: int
    close_min: int

    @classmethod
    def parse(cls, text: str) -> Window:
        """``"08:00-12:00"``."""
        start, _, end = text.partition("-")
        window = cls(_minutes(start.strip()), _minutes(end.strip()))
        if window.close_min <= window.open_min:
            raise ValueError(f"window {text!r} closes before it opens")
        return window


@dataclass(frozen=True, slots=True)
class Block:
    """One stretch of work in absolute time (ms): a truck leaves and is back inside it."""

    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Shifts:
    """The crews' working time; ``None`` in its place elsewhere means "any time"."""

    days: frozenset[int]  # 0 = Monday
    blocks: tuple[Window, ...]
    max_trip_s: int
    tz: tzinfo = field(default_factory=lambda: ZoneInfo("Asia/Seoul"))

    @classmethod
    def parse(cls, data: Mapping[str, object], tz: tzinfo) -> Shifts:
        """``{days: [mon, ...], blocks: ["08:00-12:00", "13:00-17:00"], max_trip_h: 3}``."""
        days_raw = data.get("days", DAY_NAMES[:5])
        blocks_raw = data.get("blocks", ["08:00-12:00", "13:00-17:00"])
        if not isinstance(days_raw, list | tuple) or not isinstance(blocks_raw, list | tuple):
            raise ValueError("shifts: days and blocks are lists")
        days = frozenset(DAY_NAMES.index(str(d).lower()[:3]) for d in days_raw)
        blocks = tuple(sorted((Window.parse(str(b)) for b in blocks_raw), key=lambda w: w.open_min))
        max_trip_h = data.get("max_trip_h", 3)
        if not isinstance(max_trip_h, int | float) or max_trip_h <= 0:
            raise ValueError("shifts: max_trip_h is a positive number of hours")
        return cls(days, blocks, round(float(max_trip_h) * 3600), tz)

    def blocks_between(self, start_ms: int, end_ms: int) -> Iterator[Block]:
        """Every working block that ends after ``start_ms`` and starts before ``end_ms``."""
        day = datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(self.tz).date()
        day -= timedelta(days=1)
        while True:
            midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz)
            if int(midnight.timestamp() * 1000) >= end_ms:
                return
            if day.weekday() in self.days:
                for w in self.blocks:
                    b = Block(
                        int((midnight + timedelta(minutes=w.open_min)).timestamp() * 1000),
                        int((midnight + timedelta(minutes=w.close_min)).timestamp() * 1000),
                    )
                    if b.end_ms > start_ms and b.start_ms < end_ms:
                        yield b
            day += timedelta(days=1)


def window_wait_ms(window: Window | None, ts_ms: int, tz: tzinfo) -> int | None:
    """How long a truck arriving at ``ts_ms`` waits for the bin's window to open the same day:
    0 if open now, ``None`` if it has closed for the day (the stop cannot be served)."""
    if window is None:
        return 0
    local = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(tz)
    minute = local.hour * 60 + local.minute + local.second / 60
    if minute >= window.close_min:
        return None
    if minute >= window.open_min:
        return 0
    return round((window.open_min - minute) * MINUTE_MS)
