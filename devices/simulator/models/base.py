"""The device ``Model`` protocol and what every model is built from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from common.devices import Device, Site

Fields = dict[str, float | int | bool]


@dataclass(frozen=True, slots=True)
class ModelContext:
    """A model's inputs: its registry entry, its site, the run's seed and its start time."""

    device: Device
    site: Site
    seed: int
    start_ms: int
    # Per-kind knobs from the scenario (e.g. {"daily_visitors_weekday": 450}).
    params: dict[str, float] = field(default_factory=dict)
    # Initial state overrides from the scenario (e.g. {"fill_pct": 85}).
    initial: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Model(Protocol):
    """A simulated device: advanced by the engine, asked for a reading at each report time.

    ``reading(now_ms)`` is called with non-decreasing times; the model advances its physical
    state to ``now_ms`` and returns the payload's value fields (no ``ts``/``seq``).
    """

    device: Device

    def reading(self, now_ms: int) -> Fields: ...

    def reset_counters(self) -> None:
        """Meter reboot: cumulative counters restart at zero (no-op for kinds without any)."""
        ...


@dataclass(frozen=True, slots=True)
class KindModel:
    """What the simulator knows of one device kind: ``MODEL`` in ``models/<kind>.py``."""

    build: Callable[[ModelContext], Model]
    # The value field most faults tamper with (a required one where the kind has any).
    fault_field: str
    # A field and a value outside the contract's range, for the out_of_range fault.
    out_of_range: tuple[str, float]


def to_datetime(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)
