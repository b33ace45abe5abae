"""Telemetry and status payloads of the contract, and the one function that judges them.

``parse_message(topic, payload)`` turns what a device sent into a validated reading or a
rejection with a human-readable reason. It never raises on device input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common.topics import KINDS, TopicError, Topics

MAX_PAYLOAD_BYTES: Final = 16 * 1024
MAX_FUTURE_MS: Final = 5 * 60 * 1000

# Reason codes: a small, stable vocabulary for metrics labels and dead-letter payloads.
BAD_TOPIC: Final = "bad_topic"
UNKNOWN_KIND: Final = "unknown_kind"
TOO_LARGE: Final = "too_large"
NOT_UTF8: Final = "not_utf8"
INVALID_JSON: Final = "invalid_json"
NOT_OBJECT: Final = "not_object"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
NOT_FINITE: Final = "not_finite"
OUT_OF_RANGE: Final = "out_of_range"
INVALID_TS: Final = "invalid_ts"
TS_IN_FUTURE: Final = "ts_in_future"
DEVICE_ID_MISMATCH: Final = "device_id_mismatch"
NO_FIELDS: Final = "no_fields"
BAD_STATUS: Final = "bad_status"
REASON_CODES: Final = frozenset(
    {
        BAD_TOPIC,
        UNKNOWN_KIND,
        TOO_LARGE,
        NOT_UTF8,
        INVALID_JSON,
        NOT_OBJECT,
        MISSING_FIELD,
        WRONG_TYPE,
        NOT_FINITE,
        OUT_OF_RANGE,
        INVALID_TS,
        TS_IN_FUTURE,
        DEVICE_ID_MISMATCH,
        NO_FIELDS,
        BAD_STATUS,
    }
)

# Strict numbers: JSON `true` or "12" is not a number; ints are accepted where floats are.
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
Percent = Annotated[float, Field(strict=True, ge=0, le=100, allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True, ge=0)]


def parse_ts(value: object) -> int:
    """RFC 3339 with an offset, or integer epoch milliseconds -> epoch milliseconds."""
    if isinstance(value, bool):
        raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("ts must not be negative")
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"ts {value[:40]!r} is not an RFC 3339 timestamp") from None
        if parsed.tzinfo is None or ("T" not in value.upper() and " " not in value):
            raise ValueError(f"ts {value[:40]!r} needs a date, a time and a UTC offset")
        return int(parsed.timestamp() * 1000)
    raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds")


class Telemetry(BaseModel):
    """Fields every telemetry payload shares. Unknown keys are ignored (never stored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)
    measurement: ClassVar[str]
    value_fields: ClassVar[tuple[str, ...]]
    int_fields: ClassVar[frozenset[str]] = frozenset()

    ts: int
    seq: Count | None = None
    device_id: Annotated[str, Field(strict=True)] | None = None

    @field_validator("ts", mode="plain")
    @classmethod
    def _ts(cls, value: object, info: ValidationInfo) -> int:
        ts_ms = parse_ts(value)
        now_ms = info.context["now_ms"] if info.context else _now_ms()
        if ts_ms > now_ms + MAX_FUTURE_MS:
            raise ValueError("ts is more than 5 minutes in the future")
        return ts_ms

    def values(self) -> dict[str, float | int | bool]:
        """The measurement's fields that the device sent, in schema order."""
        out: dict[str, float | int | bool] = {}
        for name in self.value_fields:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class EnergyMeterTelemetry(Telemetry):
    measurement = "energy"
    value_fields = (
        "pv_power_w",
        "load_power_w",
        "grid_power_w",
        "battery_soc_pct",
        "pv_energy_wh",
        "load_energy_wh",
        "grid_import_wh",
        "grid_export_wh",
    )

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
            raise ValueError("no_fields: an energy_meter reading needs at least one field")
        return self


class VisitorCounterTelemetry(Telemetry):
    measurement = "visitors"
    value_fields = ("entries_total", "exits_total", "occupancy")
    int_fields = frozenset(value_fields)

    entries_total: Count
    exits_total: Count
    occupancy: Count | None = None


class EwasteBinTelemetry(Telemetry):
    measurement = "ewaste_bin"
    value_fields = (
        "weight_kg",
        "fill_pct",
        "capacity_kg",
        "battery_pct",
        "temperature_c",
        "lid_open",
    )

    weight_kg: NonNegative
    fill_pct: Percent
    capacity_kg: Positive | None = None
    battery_pct: Percent | None = None
    temperature_c: Finite | None = None
    lid_open: Annotated[bool, Field(strict=True)] | None = None


TELEMETRY_MODELS: Final[dict[str, type[Telemetry]]] = {
    "energy_meter": EnergyMeterTelemetry,
    "visitor_counter": VisitorCounterTelemetry,
    "ewaste_bin": EwasteBinTelemetry,
}
MEASUREMENTS: Final[dict[str, str]] = {k: m.measurement for k, m in TELEMETRY_MODELS.items()}
STATUS_MEASUREMENT: Final = "device_status"
STATUS_VALUES: Final = {"online": True, "offline": False}


@dataclass(frozen=True, slots=True)
class Reading:
    """A validated telemetry reading; identity from the topic."""

    site: str
    kind: str
    device_id: str
    ts_ms: int
    seq: int | None
    fields: dict[str, float | int | bool]

    @property
    def measurement(self) -> str:
        return MEASUREMENTS[self.kind]


@dataclass(frozen=True, slots=True)
class StatusReading:
    """An ``online``/``offline`` status message; stamped with the time it was received."""

    site: str
    kind: str
    device_id: str
    ts_ms: int
    online: bool

    measurement: ClassVar[str] = STATUS_MEASUREMENT


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused: a stable ``code`` and a sentence for people."""

    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


ParseResult = Reading | StatusReading | Rejection


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_message(
    topic: str, payload: bytes, topics: Topics, *, now_ms: int | None = None
) -> ParseResult:
    """Judge one MQTT message. Never raises on device input."""
    try:
        return _parse(topic, payload, topics, now_ms)
    except Exception as exc:
        return Rejection(INVALID_JSON, f"unprocessable message: {type(exc).__name__}: {exc}")


def _parse(topic: str, payload: bytes, topics: Topics, now_ms: int | None) -> ParseResult:
    try:
        where = topics.parse_device_topic(topic)
    except TopicError as exc:
        return Rejection(BAD_TOPIC, str(exc))
    if where.channel == "status":
        return _parse_status(where.site, where.kind, where.device_id, payload, now_ms)
    model = TELEMETRY_MODELS.get(where.kind)
    if model is None:
        return Rejection(UNKNOWN_KIND, f"unknown device kind {where.kind!r} (known: {_kinds()})")
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(TOO_LARGE, f"payload is {len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(NOT_UTF8, f"payload is not UTF-8 (byte {exc.start})")
    try:
        reading = model.model_validate_json(text, context={"now_ms": now_ms or _now_ms()})
    except ValidationError as exc:
        return _rejection_from(exc)
    if reading.device_id is not None and reading.device_id != where.device_id:
        return Rejection(
            DEVICE_ID_MISMATCH,
            f"payload device_id {reading.device_id[:70]!r} differs from topic's "
            f"{where.device_id!r}",
        )
    return Reading(
        where.site, where.kind, where.device_id, reading.ts, reading.seq, reading.values()
    )


def _parse_status(
    site: str, kind: str, device_id: str, payload: bytes, now_ms: int | None
) -> ParseResult:
    text = payload[:32].decode("utf-8", "replace").strip().strip('"').lower()
    online = STATUS_VALUES.get(text) if len(payload) <= 32 else None
    if online is None:
        return Rejection(BAD_STATUS, f"status must be 'online' or 'offline', got {text[:20]!r}")
    return StatusReading(site, kind, device_id, now_ms if now_ms else _now_ms(), online)


_TYPE_CODES: Final = {
    "missing": MISSING_FIELD,
    "finite_number": NOT_FINITE,
    "greater_than": OUT_OF_RANGE,
    "greater_than_equal": OUT_OF_RANGE,
    "less_than": OUT_OF_RANGE,
    "less_than_equal": OUT_OF_RANGE,
    "json_invalid": INVALID_JSON,
}


def _rejection_from(exc: ValidationError) -> Rejection:
    """The first error decides the code; the reason lists them all (bounded)."""
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"])
    if first["type"] == "model_type" and not first["loc"]:
        code = NOT_OBJECT
    elif loc == "ts" and first["type"] != "missing":
        code = TS_IN_FUTURE if "in the future" in message else INVALID_TS
    elif message.startswith("Value error, no_fields"):
        code = NO_FIELDS
    else:
        code = _TYPE_CODES.get(first["type"], WRONG_TYPE)
    parts = [_describe(err) for err in errors[:5]]
    if len(errors) > 5:
        parts.append(f"... {len(errors) - 5} more")
    return Rejection(code, "; ".join(parts))


def _describe(err: Any) -> str:
    loc = ".".join(str(part) for part in err["loc"]) or "payload"
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("no_fields: ")
    if err["type"] in ("missing", "json_invalid", "model_type"):
        return f"{loc}: {msg}"
    return f"{loc}: {msg} (got {_short(err.get('input'))})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kinds() -> str:
    return ", ".join(sorted(KINDS))
