"""Scenario files (``config/scenarios/*.yaml``): window, speed, seed, devices, knobs, scripted
events, faults and the expected outcomes, validated with pydantic (errors name the bad key)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

from common.config_errors import Loc, format_errors, load_yaml
from common.durations import DurationS, duration_s
from common.kinds import KINDS, KindName
from common.timestamps import MissingOffsetError, iso_to_ms

SCENARIO_DIR: Final = Path("config/scenarios")
FaultType = Literal[
    "malformed_json",
    "missing_field",
    "wrong_type",
    "not_finite",
    "out_of_range",
    "device_id_mismatch",
    "duplicate",
    "out_of_order",
    "clock_skew",
    "silent",
    "burst",
]
FAULT_TYPES: Final[tuple[str, ...]] = get_args(FaultType)
WEEK_MS: Final = 7 * 86_400_000


class ScenarioError(ValueError):
    """A scenario file that cannot be read or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultSpec(_Strict):
    """How often one fault happens: ``count`` times spread over the run, and/or a ``rate``
    (probability per telemetry message). ``devices`` limits it to some devices."""

    count: int = Field(default=0, ge=0)
    rate: float = Field(default=0.0, ge=0.0, le=1.0)
    devices: tuple[str, ...] | None = None
    duration_s: DurationS = 1800.0  # silent: how long the device stays quiet
    size: int = Field(default=20, ge=2, le=10_000)  # burst: messages in one burst
    # clock_skew: how far ahead the device's clock runs; 20 years, like an RTC that lost its
    # battery and woke in 2045, so replays of past windows are still refused.
    skew_s: DurationS = 20 * 365 * 86_400.0


class Event(_Strict):
    """A scripted event at ``at`` (offset from start like '2h', or an RFC 3339 time)."""

    type: Literal["group_visit", "counter_reset", "silence", "dispatch"]
    at: str | float
    device: str | None = None
    size: int = Field(default=30, ge=1, le=1000)  # group_visit
    dwell_min: float = Field(default=90.0, gt=0)  # group_visit
    duration_s: DurationS = 1800.0  # silence
    truck: str | None = None  # dispatch
    stops: tuple[str, ...] = ()  # dispatch: bin ids in driving order


class Expectation(_Strict):
    """An outcome the scenario must produce; checked in-process and by ``verify``.

    ``bin_fill_above`` (fill_pct >= threshold), ``bin_overflows`` (fill 100),
    ``occupancy_above_capacity``, ``grid_import_after_sunset``, ``device_silent`` (a gap in
    telemetry of at least ``min_gap_s``), ``bin_collected`` (weight drops below ``threshold``).
    """

    type: Literal[
        "bin_fill_above",
        "bin_overflows",
        "occupancy_above_capacity",
        "grid_import_after_sunset",
        "device_silent",
        "bin_collected",
    ]
    device: str
    threshold: float | None = None
    min_gap_s: DurationS = 900.0


class Synthetic(RootModel[dict[KindName, Annotated[int, Field(ge=0)]]]):
    """Extra devices cloned from the registry's (for stress runs): how many per kind."""

    model_config = ConfigDict(frozen=True)
    root: dict[KindName, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)

    @field_validator("root")
    @classmethod
    def _in_kind_order(cls, value: dict[str, int]) -> dict[str, int]:
        # Clones are made kind by kind in declaration order, whatever order the file uses.
        return {kind: value[kind] for kind in KINDS if kind in value}


class Scenario(_Strict):
    name: str
    description: str = ""
    start: datetime | None = None  # None: now - duration when faster than real time, else now
    # "latest_week": play ``start`` moved by whole weeks to the latest window that has ended
    # (same weekday and local time, so the same expectations hold) - a fixed date would sooner
    # or later fall out of every bucket's retention. "fixed": exactly at ``start``.
    anchor: Literal["fixed", "latest_week"] = "fixed"
    duration_s: DurationS = 86_400.0
    speed: float = Field(default=60.0, gt=0)
    backfill: bool = False
    seed: int = 1
    devices: tuple[str, ...] | None = None  # None: every device in the registry
    kinds: tuple[KindName, ...] | None = None
    interval_s: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    connection: Literal["per_device", "shared"] = "per_device"
    synthetic: Synthetic = Synthetic()
    params: dict[str, dict[str, float]] = Field(default_factory=dict)
    initial: dict[str, dict[str, float]] = Field(default_factory=dict)
    events: tuple[Event, ...] = ()
    faults: dict[FaultType, FaultSpec] = Field(default_factory=dict)
    expect: tuple[Expectation, ...] = ()

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("start needs a UTC offset, e.g. 2025-06-13T12:00:00+09:00")
        return value

    @model_validator(mode="after")
    def _anchorable(self) -> Scenario:
        if self.anchor != "fixed":
            if self.start is None:
                raise ValueError(f"anchor {self.anchor} needs a start to move")
            fixed = [e.at for e in self.events if isinstance(e.at, str) and "T" in e.at]
            if fixed:
                # An absolute time would stay behind when the window moves.
                raise ValueError(
                    f"anchor {self.anchor}: give event times as offsets from the start, "
                    f"not {fixed[0]!r}"
                )
        return self

    def anchored_start_ms(self, start_ms: int, now_ms: int) -> int:
        """``start_ms`` as this scenario's anchor places it, given the instant ``now_ms``."""
        if self.anchor == "fixed":
            return start_ms
        # The latest whole-week shift (possibly backwards) whose window ends by now.
        weeks = (now_ms - int(self.duration_s * 1000) - start_ms) // WEEK_MS
        return start_ms + weeks * WEEK_MS

    def offset_ms(self, at: str | float, start_ms: int) -> int:
        """An event time: an offset from the start, or an absolute RFC 3339 time."""
        if isinstance(at, str) and "T" in at:
            try:
                return iso_to_ms(at, require_offset=True)
            except MissingOffsetError:
                raise ScenarioError(
                    f"scenario {self.name}: event time {at!r} needs a UTC offset"
                ) from None
        return start_ms + int(duration_s(at) * 1000)


def _dotted(loc: Loc) -> str:
    """``events.0.sizee``: the scenario file's way of naming a key."""
    return ".".join(str(part) for part in loc) or "scenario"


def scenario_path(name_or_path: str, directory: Path = SCENARIO_DIR) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return directory / f"{name_or_path}.yaml"


def load_scenario(name_or_path: str, directory: Path = SCENARIO_DIR) -> Scenario:
    """Load ``config/scenarios/<name>.yaml`` (or a path); raise ScenarioError naming the key."""
    path = scenario_path(name_or_path, directory)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc.strerror or exc}") from exc
    document = load_yaml(text, str(path), ScenarioError)
    data: Any = document.data
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping (name, duration_s, ...)")
    data.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        message = format_errors(
            str(path), exc, document, describe=_dotted, rename={"extra_forbidden": "unknown key"}
        )
        raise ScenarioError(message) from None
