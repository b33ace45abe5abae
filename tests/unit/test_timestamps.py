"""RFC 3339 <-> epoch milliseconds, the one pair every program uses."""

from __future__ import annotations

import pytest

from common.timestamps import MissingOffsetError, iso_to_ms, ms_to_iso

T = 1_750_000_000_123  # 2025-06-15T15:06:40.123Z


def test_round_trip_keeps_the_millisecond() -> None:
    assert ms_to_iso(T) == "2025-06-15T15:06:40.123Z"
    assert iso_to_ms(ms_to_iso(T)) == T


@pytest.mark.parametrize(
    "text",
    ["2025-06-15T15:06:40.123Z", "2025-06-15T15:06:40.123+00:00", "2025-06-16T00:06:40.123+09:00"],
)
def test_any_offset_gives_the_same_instant(text: str) -> None:
    assert iso_to_ms(text) == T


def test_a_stamp_without_offset_is_utc_unless_an_offset_is_required() -> None:
    assert iso_to_ms("2025-06-15T15:06:40.123") == T
    with pytest.raises(MissingOffsetError):
        iso_to_ms("2025-06-15T15:06:40.123", require_offset=True)


def test_text_that_is_no_stamp_raises_or_gives_the_default() -> None:
    with pytest.raises(ValueError):
        iso_to_ms("yesterday")
    assert iso_to_ms("yesterday", default=42) == 42
