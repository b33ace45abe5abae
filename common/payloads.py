"""Telemetry and status payloads of the contract, and the one function that judges them.

``parse_message(topic, payload)`` turns what a device sent into a validated reading or a
rejection with a stable code and a human-readable reason. It never raises: a failure of its
own is an ``internal_error`` rejection, never blamed on the device.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from pydantic import ValidationError

from common.kinds import INVALID_TS, KINDS, MAX_FUTURE_MS, NO_FIELDS, TS_IN_FUTURE
from common.topics import DeviceTopic, TopicError, Topics

if TYPE_CHECKING:
    from common.identity import DeviceGate

__all__ = [
    "BAD_STATUS",
    "BAD_TOPIC",
    "DEVICE_ID_MISMATCH",
    "IDENTITY_CODES",
    "INTERNAL_ERROR",
    "INVALID_JSON",
    "INVALID_TS",
    "MAX_PAYLOAD_BYTES",
    "MISSING_FIELD",
    "NOT_FINITE",
    "NOT_OBJECT",
    "NOT_UTF8",
    "NO_FIELDS",
    "OUT_OF_RANGE",
    "REASON_CODES",
    "STATUS_MEASUREMENT",
    "STATUS_VALUES",
    "TOO_LARGE",
    "TS_IN_FUTURE",
    "UNKNOWN_DEVICE",
    "UNKNOWN_DEVICE_LIMIT",
    "UNKNOWN_KIND",
    "WRONG_TYPE",
    "ParseResult",
    "Reading",
    "Rejection",
    "StatusReading",
    "judge_telemetry",
    "parse_message",
]

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES: Final = 16 * 1024

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
DEVICE_ID_MISMATCH: Final = "device_id_mismatch"
BAD_STATUS: Final = "bad_status"
UNKNOWN_DEVICE: Final = "unknown_device"
UNKNOWN_DEVICE_LIMIT: Final = "unknown_device_limit"
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
"""What a device's message can be rejected for, on its own."""
IDENTITY_CODES: Final = frozenset({UNKNOWN_DEVICE, UNKNOWN_DEVICE_LIMIT})
"""What it can be rejected for given the device registry (``parse_message(..., gate=)``)."""
INTERNAL_ERROR: Final = "internal_error"
"""The judge itself failed (a bug here, not the device's fault): logged with its traceback and
counted under its own code, outside :data:`REASON_CODES`."""

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
        return KINDS[self.kind].measurement


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
    topic: str,
    payload: bytes,
    topics: Topics,
    *,
    now_ms: int | None = None,
    gate: DeviceGate | None = None,
    max_future_ms: int = MAX_FUTURE_MS,
) -> ParseResult:
    """Judge one MQTT message. Never raises; a failure of its own is ``internal_error``.

    With a ``gate``, the topic's (site, kind, device_id) is judged against the device registry
    first (``common.identity``), before any work on the payload. A ``ts`` more than
    ``max_future_ms`` after ``now_ms`` is ``ts_in_future``.
    """
    try:
        return _parse(topic, payload, topics, now_ms, gate, max_future_ms)
    except Exception as exc:
        log.exception("internal error while judging a message", extra={"topic": topic[:200]})
        return Rejection(
            INTERNAL_ERROR, f"the receiver failed to judge this message: {type(exc).__name__}"
        )


def _parse(
    topic: str,
    payload: bytes,
    topics: Topics,
    now_ms: int | None,
    gate: DeviceGate | None,
    max_future_ms: int,
) -> ParseResult:
    try:
        where = topics.parse_device_topic(topic)
    except TopicError as exc:
        return Rejection(BAD_TOPIC, str(exc))
    if gate is not None and (refused := gate.check(where.site, where.kind, where.device_id)):
        return refused
    if where.channel == "status":
        return _parse_status(where.site, where.kind, where.device_id, payload, now_ms)
    return _parse_telemetry(where, payload, now_ms, max_future_ms)


def judge_telemetry(
    where: DeviceTopic,
    payload: bytes,
    now_ms: int | None = None,
    max_future_ms: int = MAX_FUTURE_MS,
) -> ParseResult:
    """``parse_message`` for a telemetry topic its caller has parsed already (the bridge, which
    builds the topic itself): the same judge of the payload, without parsing the topic again.
    Never raises."""
    try:
        return _parse_telemetry(where, payload, now_ms, max_future_ms)
    except Exception as exc:
        log.exception("internal error while judging a message", extra={"topic": str(where)})
        return Rejection(
            INTERNAL_ERROR, f"the receiver failed to judge this message: {type(exc).__name__}"
        )


def _parse_telemetry(
    where: DeviceTopic, payload: bytes, now_ms: int | None, max_future_ms: int
) -> ParseResult:
    kind = KINDS.get(where.kind)
    if kind is None:
        return Rejection(UNKNOWN_KIND, f"unknown device kind {where.kind!r} (known: {_kinds()})")
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(TOO_LARGE, f"payload is {len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(NOT_UTF8, f"payload is not UTF-8 (byte {exc.start})")
    try:
        context = {"now_ms": now_ms or _now_ms(), "max_future_ms": max_future_ms}
        reading = kind.telemetry.model_validate_json(text, context=context)
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


# pydantic's error types -> codes; a custom error type that is a code is its own code.
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
    error_type = first["type"]
    if error_type in REASON_CODES:
        code = error_type
    elif error_type == "model_type" and not first["loc"]:
        code = NOT_OBJECT
    else:
        code = _TYPE_CODES.get(error_type, WRONG_TYPE)
    parts = [_describe(err) for err in errors[:5]]
    if len(errors) > 5:
        parts.append(f"... {len(errors) - 5} more")
    return Rejection(code, "; ".join(parts))


def _describe(err: Any) -> str:
    loc = ".".join(str(part) for part in err["loc"]) or "payload"
    msg = str(err["msg"])
    if err["type"] in ("missing", "json_invalid", "model_type"):
        return f"{loc}: {msg}"
    return f"{loc}: {msg} (got {_short(err.get('input'))})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kinds() -> str:
    return ", ".join(sorted(KINDS))
