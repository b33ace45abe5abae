"""The period a report covers: whole local days, [start, end), in the facilities' time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime  # local midnight, aware
    end: datetime  # local midnight after the last day, aware

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("the period must end after it starts")

    @classmethod
    def of_days(cls, first: date, last: date, tz: ZoneInfo) -> Period:
        """From the first day's midnight to the midnight after the last day."""
        return cls(
            datetime.combine(first, time(), tz),
            datetime.combine(last + timedelta(days=1), time(), tz),
        )

    @classmethod
    def week_before(cls, today: date, tz: ZoneInfo) -> Period:
        """Monday to Sunday of the last whole week before ``today``'s."""
        monday = today - timedelta(days=today.weekday() + 7)
        return cls.of_days(monday, monday + timedelta(days=6), tz)

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()

    def days(self) -> list[date]:
        day, out = self.start.date(), []
        while day < self.end.date():
            out.append(day)
            day += timedelta(days=1)
        return out

    def year_start(self) -> datetime:
        """1 January (local) of the year the period's last day is in."""
        return datetime.combine(date(self.last_day.year, 1, 1), time(), self.start.tzinfo)

    def label(self) -> str:
        return f"{self.start.date().isoformat()} to {self.last_day.isoformat()}"

    def where(self) -> str:
        """The InfluxQL time condition of the period."""
        return f"time >= {self.start_ms}ms AND time < {self.end_ms}ms"
