"""The one duration grammar of every config file, setting and flag: ``90``, ``500ms``, ``1.5h``,
``30d``, ``2w``, ``1d2h30m``; a plain number (or numeric string) is seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated, Final

from pydantic import BeforeValidator

_UNIT_MS: Final = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
}
# Largest unit first, so "1d2h30m" reads as written; each unit at most once.
_ORDER: Final = ("w", "d", "h", "m", "s", "ms")
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d|w)\s*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_EXAMPLES: Final = "90, 500ms, 1.5h, 30d or 1d2h30m"


def _parse_ms(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"a duration is a number of seconds or a string like {_EXAMPLES}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite duration")
        if value < 0:
            raise ValueError("a duration must not be negative")
        return float(value) * 1000
    if isinstance(value, str):
        text = value.strip().lower()
        if _NUMBER.fullmatch(text):
            return float(text) * 1000
        total, position, last = 0.0, 0, -1
        for match in _PART.finditer(text):
            rank = _ORDER.index(match.group(2))
            if match.start() != position or rank <= last:
                break
            total += float(match.group(1)) * _UNIT_MS[match.group(2)]
            position, last = match.end(), rank
        else:
            if text and position == len(text):
                return total
    raise ValueError(f"{value!r} is not a duration like {_EXAMPLES}")


def duration_s(value: object) -> float:
    """A duration in any accepted form -> seconds (a plain number is already seconds)."""
    return _parse_ms(value) / 1000


def duration_ms(value: object) -> int:
    """A duration in any accepted form -> whole milliseconds (a plain number is seconds)."""
    return int(_parse_ms(value))


DurationMs = Annotated[int, BeforeValidator(duration_ms)]
"""A pydantic field holding milliseconds, written in the duration grammar."""

DurationS = Annotated[float, BeforeValidator(duration_s)]
"""A pydantic field holding seconds, written in the duration grammar."""
