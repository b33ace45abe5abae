"""Time stamps on the wire: RFC 3339 text <-> epoch milliseconds, both directions in one place."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms_to_iso(ts_ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 UTC with milliseconds (``...Z``)."""
    stamp = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class MissingOffsetError(ValueError):
    """An RFC 3339-looking stamp without its UTC offset, where one is required."""


def iso_to_ms(text: str, *, require_offset: bool = False, default: int | None = None) -> int:
    """RFC 3339 (``Z`` or an offset) -> epoch milliseconds.

    A stamp without an offset is read as UTC, unless ``require_offset`` (device input, where a
    local time without its offset cannot be placed) refuses it. Text that is no time stamp
    raises ValueError, or gives ``default`` when one is given.
    """
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        if default is None:
            raise
        return default
    if stamp.tzinfo is None:
        if require_offset:
            raise MissingOffsetError(f"{text[:40]!r} has no UTC offset")
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)
