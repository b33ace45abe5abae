"""The device kinds, each declared once: what it sends and what the registry tells about it.

A :class:`Kind` names the kind's telemetry model (the payload fields it sends), its InfluxDB
measurement, its default reporting interval and its registry parameters (the keys a device of
that kind may set in ``config/devices.yaml``). Topics, payload validation, the registry, the
simulator, scenarios and dashboards all derive their per-kind tables from :data:`KINDS`;
``docs/architecture.md`` ("Adding a device kind") lists the files a new kind touches.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from common.fields import (
    Count,
    Finite,
    Flag,
    Id,
    NonNegative,
    NonNegativeFloat,
    Percent,
    Positive,
    PositiveFloat,
    PositiveInt,
    ResidentialType,
    registry_error,
)
from common.timestamps import MissingOffsetError, iso_to_ms
from common.topics import check_id

MAX_FUTURE_MS: Final = 5 * 60 * 1000
"""Default of how far ahead of the receiver's clock a reading's ``ts`` may be (``MAX_FUTURE_S``);
a judge passes its own bound as ``max_future_ms`` in the validation context."""

# Rejection codes raised from inside the telemetry models, as pydantic error types (the
# judge, common.payloads, reads codes from error types, never from message wording).
INVALID_TS: Final = "invalid_ts"
TS_IN_FUTURE: Final = "ts_in_future"
NO_FIELDS: Final = "no_fields"


def parse_ts(value: object) -> int:
    """RFC 3339 with an offset, or integer epoch milliseconds -> epoch milliseconds."""
    if isinstance(value, bool):
        raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("ts must not be negative")
        return value
    if isinstance(value, str):
        needs = f"ts {value[:40]!r} needs a date, a time and a UTC offset"
        try:
            ts_ms = iso_to_ms(value, require_offset=True)
        except MissingOffsetError:
            raise ValueError(needs) from None
        except ValueError:
            raise ValueError(f"ts {value[:40]!r} is not an RFC 3339 timestamp") from None
        if "T" not in value.upper() and " " not in value:
            raise ValueError(needs)
        return ts_ms
    raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds")


# -- telemetry -------------------------------------------------------------------------------
class Telemetry(BaseModel):
    """Fields every telemetry payload shares. Unknown keys are ignored (never stored).

    A kind's value fields are the fields its subclass declares, in declaration order.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)
    value_fields: ClassVar[tuple[str, ...]] = ()
    required_fields: ClassVar[tuple[str, ...]] = ()

    ts: int
    seq: Count | None = None
    device_id: Annotated[str, Field(strict=True)] | None = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.value_fields = tuple(n for n in cls.model_fields if n not in Telemetry.model_fields)
        cls.required_fields = tuple(
            n for n in cls.value_fields if cls.model_fields[n].is_required()
        )

    @field_validator("ts", mode="plain")
    @classmethod
    def _ts(cls, value: object, info: ValidationInfo) -> int:
        try:
            ts_ms = parse_ts(value)
        except ValueError as exc:
            raise PydanticCustomError(INVALID_TS, str(exc)) from None
        context = info.context or {}
        now_ms = context.get("now_ms") or time.time_ns() // 1_000_000
        max_future_ms = context.get("max_future_ms", MAX_FUTURE_MS)
        if ts_ms > now_ms + max_future_ms:
            # How far ahead tells a device's bad clock from the receiver's own skew.
            raise PydanticCustomError(
                TS_IN_FUTURE,
                f"ts is {(ts_ms - now_ms) / 1000:.0f} s ahead of the receiver's clock "
                f"(limit {max_future_ms / 1000:.0f} s, MAX_FUTURE_S)",
            )
        return ts_ms

    def values(self) -> dict[str, float | int | bool]:
        """The measurement's fields that the device sent, in schema order."""
        out: dict[str, float | int | bool] = {}
        for name in self.value_fields:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


# -- registry parameters ---------------------------------------------------------------------
class KindParams(BaseModel):
    """A kind's registry parameters: the keys a device of the kind may set in devices.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def tags(self) -> dict[str, str]:
        """Extra InfluxDB tags this device's readings carry (none unless the kind says so)."""
        return {}


# -- energy_meter ------------------------------------------------------------------------------
class EnergyMeterTelemetry(Telemetry):
    pv_power_w: NonNegative | None = None
    load_power_w: NonNegative | None = None
    grid_power_w: Finite | None = None
    battery_soc_pct: Percent | None = None
    pv_energy_wh: NonNegative | None = None
    load_energy_wh: NonNegative | None = None
    grid_import_wh: NonNegative | None = None
    grid_export_wh: NonNegative | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> EnergyMeterTelemetry:
        if not any(getattr(self, name) is not None for name in self.value_fields):
            raise PydanticCustomError(NO_FIELDS, "an energy_meter reading needs at least one field")
        return self


class EnergyMeterParams(KindParams):
    pv_peak_w: PositiveFloat | None = None
    battery_kwh: NonNegativeFloat | None = None
    battery_power_w: PositiveFloat | None = None
    base_load_w: NonNegativeFloat | None = None
    peak_load_w: PositiveFloat | None = None

    @model_validator(mode="after")
    def _base_below_peak(self) -> EnergyMeterParams:
        if (
            self.base_load_w is not None
            and self.peak_load_w is not None
            and self.base_load_w > self.peak_load_w
        ):
            raise registry_error("base_load_w must not exceed peak_load_w")
        return self


# -- visitor_counter -------------------------------------------------------------------------
class VisitorCounterTelemetry(Telemetry):
    entries_total: Count
    exits_total: Count
    occupancy: Count | None = None


class VisitorCounterParams(KindParams):
    capacity_people: PositiveInt | None = None


# -- ewaste_bin ------------------------------------------------------------------------------
class EwasteBinTelemetry(Telemetry):
    # Most bin sensors measure a distance from the lid, not a weight: fill_pct is what every
    # bin sends, weight_kg only a weighed bin (docs/contract.md, "weight_kg optional").
    weight_kg: NonNegative | None = None
    fill_pct: Percent
    capacity_kg: Positive | None = None
    battery_pct: Percent | None = None
    temperature_c: Finite | None = None
    lid_open: Flag | None = None
    # Alarm flags off-the-shelf sensors send (tilt/position, fire/heat, low battery).
    tilted: Flag | None = None
    fire_alarm: Flag | None = None
    battery_low: Flag | None = None


class EwasteBinParams(KindParams):
    zone: Id
    residential_type: ResidentialType
    capacity_kg: PositiveFloat
    volume_l: PositiveFloat | None = None
    # A distance sensor under the lid: what it reads over an empty bin and over a full one.
    sensor_empty_mm: PositiveFloat | None = None
    sensor_full_mm: NonNegativeFloat | None = None
    # kg per litre of loose e-waste, for bins that report fill only (dispatch estimates).
    bulk_density_kg_l: PositiveFloat | None = None

    @model_validator(mode="after")
    def _geometry(self) -> EwasteBinParams:
        empty, full = self.sensor_empty_mm, self.sensor_full_mm
        if (empty is None) != (full is None):
            raise registry_error("sensor_empty_mm and sensor_full_mm must be given together")
        if empty is not None and full is not None and full >= empty:
            raise registry_error("sensor_full_mm must be less than sensor_empty_mm")
        return self

    def tags(self) -> dict[str, str]:
        return {"zone": self.zone, "residential_type": self.residential_type}

    def fill_pct_from_distance(self, distance_mm: float) -> float | None:
        """The fill a lid sensor's distance means, clamped to 0..100; None without geometry."""
        empty, full = self.sensor_empty_mm, self.sensor_full_mm
        if empty is None or full is None:
            return None
        return _clamp_pct(100 * (empty - distance_mm) / (empty - full))

    def fill_pct_from_weight(self, weight_kg: float) -> float:
        """The fill a weight means, for a weight-only sensor (the bin's capacity is full)."""
        return _clamp_pct(100 * weight_kg / self.capacity_kg)


def _clamp_pct(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 2)


# -- the registry of kinds -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Kind:
    """One device kind; every per-kind table elsewhere is derived from these."""

    name: str
    measurement: str
    telemetry: type[Telemetry]
    params: type[KindParams]
    default_interval_s: int
    # A value field every reading of the kind carries: dashboards count readings by it.
    count_field: str
    # Devices of the kind must have coordinates (trucks drive to them).
    located: bool = False

    def __post_init__(self) -> None:
        check_id(self.name, "kind")
        if self.count_field not in self.telemetry.value_fields:
            raise ValueError(f"kind {self.name}: count_field {self.count_field!r} is not sent")

    def required_keys(self) -> tuple[str, ...]:
        """Registry keys a device of this kind must set (besides id, site and kind)."""
        params = tuple(n for n, f in self.params.model_fields.items() if f.is_required())
        return params + (("latitude", "longitude") if self.located else ())


_DECLARED: Final = (
    Kind(
        "energy_meter",
        measurement="energy",
        telemetry=EnergyMeterTelemetry,
        params=EnergyMeterParams,
        default_interval_s=60,
        count_field="load_power_w",
    ),
    Kind(
        "visitor_counter",
        measurement="visitors",
        telemetry=VisitorCounterTelemetry,
        params=VisitorCounterParams,
        default_interval_s=60,
        count_field="entries_total",
    ),
    Kind(
        "ewaste_bin",
        measurement="ewaste_bin",
        telemetry=EwasteBinTelemetry,
        params=EwasteBinParams,
        default_interval_s=300,
        count_field="fill_pct",
        located=True,
    ),
)
KINDS: Final[Mapping[str, Kind]] = {kind.name: kind for kind in _DECLARED}
"""Every device kind by name, in declaration order."""

if TYPE_CHECKING:
    KindName = str
else:
    # For pydantic: a field of this type accepts exactly the declared kinds.
    KindName = Literal[tuple(KINDS)]
