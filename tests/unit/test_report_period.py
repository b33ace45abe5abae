"""The report's period: whole Korean days, last week by default."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from services.report.__main__ import parse_args
from services.report.period import Period

SEOUL = ZoneInfo("Asia/Seoul")


@pytest.mark.parametrize("today", [date(2026, 6, 29), date(2026, 7, 1), date(2026, 7, 5)])
def test_last_week_is_monday_to_sunday_before_this_week(today: date) -> None:
    period = Period.week_before(today, SEOUL)
    assert (period.start.date(), period.last_day) == (date(2026, 6, 22), date(2026, 6, 28))
    assert len(period.days()) == 7
    # Korean midnight is 15:00 UTC the day before.
    assert period.start.isoformat() == "2026-06-22T00:00:00+09:00"
    assert period.start_ms == 1782054000000
    assert period.where() == f"time >= {period.start_ms}ms AND time < {period.end_ms}ms"


def test_year_start_is_of_the_periods_last_day() -> None:
    period = Period.of_days(date(2025, 12, 29), date(2026, 1, 4), SEOUL)
    assert period.year_start().isoformat() == "2026-01-01T00:00:00+09:00"


@pytest.mark.parametrize(
    "argv",
    [
        ["--from", "2026-06-01"],
        ["--from", "2026-06-10", "--to", "2026-06-01"],
        ["--format", "docx"],
        ["--send", "--format", "html"],
        ["--from", "June"],
    ],
)
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        parse_args(argv)
    assert stop.value.code == 2
