"""Units a foreign field may arrive in, and the contract unit each converts to.

A contract field's unit is in its name (``_w`` W, ``_wh`` Wh, ``_pct`` %, ``_kg`` kg, ``_c``
°C); a source's field says what its device sends, and the factor between them lives here.
"""

from __future__ import annotations

from typing import Final

# unit -> (dimension, factor to the dimension's contract unit)
UNITS: Final[dict[str, tuple[str, float]]] = {
    "W": ("power", 1.0),
    "kW": ("power", 1000.0),
    "mW": ("power", 0.001),
    "Wh": ("energy", 1.0),
    "kWh": ("energy", 1000.0),
    "MWh": ("energy", 1_000_000.0),
    "mWh": ("energy", 0.001),
    "mm": ("length", 1.0),
    "cm": ("length", 10.0),
    "m": ("length", 1000.0),
    "kg": ("mass", 1.0),
    "g": ("mass", 0.001),
    "t": ("mass", 1000.0),
    "pct": ("percent", 1.0),
    "per_mille": ("percent", 0.1),
    "fraction": ("percent", 100.0),
    "C": ("temperature", 1.0),
    "dC": ("temperature", 0.1),
    "count": ("count", 1.0),
}


def dimension_of_field(field: str) -> str:
    """The dimension a contract field measures, from its name's unit suffix."""
    for suffix, dimension in (
        ("_wh", "energy"),
        ("_w", "power"),
        ("_pct", "percent"),
        ("_kg", "mass"),
        ("_c", "temperature"),
        ("_mm", "length"),
    ):
        if field.endswith(suffix):
            return dimension
    return "count"


def factor(unit: str) -> float:
    return UNITS[unit][1]
