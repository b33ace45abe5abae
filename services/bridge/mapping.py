"""One source's conversion: a foreign MQTT message -> contract readings, a skip, or a rejection.

``Converter.convert`` never raises (a failure of its own is ``internal_error``). It keeps the
little state real devices need (last known values for partial messages, counter wraps and
per-period sums) per device, in memory: after a restart a merged state starts empty and a
summed total starts again at 0, which the contract allows (a counter may reset).
Every reading it makes is judged by the contract's own judge (``common.payloads``) before it
leaves, so a reading the bridge publishes is one ingest and alerts accept.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from types import NoneType, UnionType
from typing import Annotated, Any, Final, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.devices import Device, Registry
from common.kinds import KINDS, MAX_FUTURE_MS, EwasteBinParams
from common.payloads import (
    INTERNAL_ERROR,
    INVALID_JSON,
    INVALID_TS,
    NOT_UTF8,
    TOO_LARGE,
    UNKNOWN_DEVICE,
    Reading,
    Rejection,
    judge_telemetry,
)
from common.timestamps import iso_to_ms
from common.topics import DeviceTopic, TopicError, Topics, check_id
from services.bridge.config import DeviceSpec, FieldSpec, Path_, Source, TimestampSpec, compile_path
from services.bridge.presets import MALFORMED_ENVELOPE, Preset, Skip, Uplink, preset
from services.bridge.units import factor

log = logging.getLogger(__name__)

__all__ = [
    "BRIDGE_CODES",
    "NO_GEOMETRY",
    "TOO_DEEP",
    "UNMAPPABLE",
    "Converted",
    "Converter",
    "Outcome",
    "Outgoing",
]

DEFAULT_MAX_SOURCE_BYTES: Final = 256 * 1024
TOO_DEEP: Final = "too_deep"
UNMAPPABLE: Final = "unmappable"
NO_GEOMETRY: Final = "no_geometry"
BRIDGE_CODES: Final = frozenset(
    {MALFORMED_ENVELOPE, "no_decoded_payload", TOO_DEEP, UNMAPPABLE, NO_GEOMETRY}
)
"""Dead-letter codes of the bridge's own (besides the contract's, which its judge gives)."""

_LEADING_NUMBER: Final = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*[^\d\s.]*\s*$")
_MISSING: Final = object()
_SECONDS_BELOW: Final = 100_000_000_000  # a number below this is seconds, above milliseconds


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One contract reading to publish: its telemetry topic and JSON payload."""

    topic: str
    payload: bytes
    device_id: str


@dataclass(frozen=True, slots=True)
class Converted:
    readings: tuple[Outgoing, ...]
    problems: tuple[str, ...] = ()
    """Fields left out of a reading (text where a number was due, unknown map value)."""


Outcome = Converted | Skip | Rejection


@dataclass(slots=True)
class _Counter:
    last_raw: float | None = None
    offset: float = 0.0
    total: float = 0.0


@dataclass(slots=True)
class _DeviceState:
    merged: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, _Counter] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    spec: FieldSpec
    paths: tuple[tuple[bool, Path_], ...]
    integer: bool
    flag: bool


def _kinds_of(annotation: Any) -> set[Any]:
    """The plain types a field's annotation allows: ``Flag | None`` -> {bool}."""
    if get_origin(annotation) in (Union, UnionType):
        return set().union(*(_kinds_of(a) for a in get_args(annotation) if a is not NoneType))
    if get_origin(annotation) is Annotated:
        return _kinds_of(get_args(annotation)[0])
    return {annotation}


def _get(root: Any, path: Path_) -> Any:
    node = root
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return _MISSING
            node = node[part]
        else:
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
    return node


def _deep_merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` laid over ``old``; a key set to null is removed (Shelly's way to say so)."""
    out = dict(old)
    for key, value in new.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _dev_eui_text(value: str) -> str:
    """ChirpStack v3's JSON marshaler writes a DevEUI as base64 of its 8 bytes."""
    text = value.strip()
    if len(text) == 12 and text.endswith("="):
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return text
        if len(raw) == 8:
            return raw.hex().upper()
    return text


def _tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "Asia/Seoul":  # minimal images may lack tzdata; no DST there since 1988
            return timezone(timedelta(hours=9))
        raise


class Converter:
    """Converts one source's messages; call from one thread (the source's network thread)."""

    def __init__(
        self,
        source: Source,
        registry: Registry,
        topics: Topics,
        *,
        max_source_bytes: int = DEFAULT_MAX_SOURCE_BYTES,
        max_future_ms: int = MAX_FUTURE_MS,
    ) -> None:
        self.source = source
        self.max_future_ms = max_future_ms
        self.registry = registry
        self.topics = topics
        self.max_source_bytes = max_source_bytes
        self.preset: Preset = preset(source.preset)
        self.kind = KINDS[source.kind]
        device = source.device or self.preset.device
        if device is None:  # the config's validator prevents this; keep mypy honest
            raise ValueError(f"source {source.name}: no device lookup")
        self.device_spec: DeviceSpec = device
        self.device_path = compile_path(device.path) if device.path else None
        stamp = source.timestamp or self.preset.timestamp
        self.stamp: TimestampSpec = stamp
        self.stamp_paths = tuple(compile_path(p) for p in stamp.path)
        self.stamp_tz = _tz(stamp.timezone) if stamp.timezone else None
        self.merge = self.preset.merge if source.merge is None else source.merge
        self.records = compile_path(source.records) if source.records else None
        self.seq = compile_path(source.seq) if source.seq else None
        model = self.kind.telemetry.model_fields
        self.fields = tuple(
            _Field(
                name,
                spec,
                tuple(compile_path(p) for p in spec.path),
                integer=int in _kinds_of(model[name].annotation),
                flag=bool in _kinds_of(model[name].annotation),
            )
            for name, spec in source.fields.items()
        )
        self._state: dict[str, _DeviceState] = {}
        self._topics: dict[str, tuple[DeviceTopic, str]] = {}  # per registered device

    # -- the judge ---------------------------------------------------------------------------
    def convert(self, topic: str, payload: bytes, received_ms: int) -> Outcome:
        try:
            return self._convert(topic, payload, received_ms)
        except Exception as exc:
            log.exception("internal error while converting", extra={"source": self.source.name})
            return Rejection(INTERNAL_ERROR, f"the bridge failed to convert: {type(exc).__name__}")

    def _convert(self, topic: str, payload: bytes, received_ms: int) -> Outcome:
        if len(payload) > self.max_source_bytes:
            return Rejection(
                TOO_LARGE, f"payload is {len(payload)} bytes, limit {self.max_source_bytes}"
            )
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection(NOT_UTF8, f"payload is not UTF-8 (byte {exc.start})")
        levels = topic.split("/")
        try:
            doc = json.loads(text) if text.strip() else None
        except RecursionError:
            return Rejection(TOO_DEEP, "JSON nested too deeply")
        except ValueError as exc:
            # A Tasmota LWT or a Shelly "online" is plain text: the preset may skip it first.
            classified = self.preset.classify(levels, None)
            if isinstance(classified, Skip):
                return classified
            return Rejection(INVALID_JSON, f"payload is not JSON: {str(exc)[:80]}")
        classified = self.preset.classify(levels, doc)
        if not isinstance(classified, Uplink):
            return classified
        device = self._device(levels, doc)
        if isinstance(device, Rejection):
            return device
        data = classified.data
        records: list[Any]
        if self.records is not None:
            found = _get(data if not self.records[0] else doc, self.records[1])
            if not isinstance(found, list) or not found:
                return Rejection(UNMAPPABLE, f"no list of records at {self.source.records!r}")
            records = found[:1000]  # a bound: one message never floods our broker
        else:
            records = [data]
        state = self._state.setdefault(device.id, _DeviceState())
        out: list[Outgoing] = []
        problems: list[str] = []
        for item in records:
            if not isinstance(item, dict):
                return Rejection(UNMAPPABLE, "a record is not a JSON object")
            record = _deep_merge(state.merged, item) if self.merge else item
            made = self._reading(device, doc, record, state, received_ms, problems)
            if isinstance(made, Rejection):
                # A dead-lettered message leaves the known state as it was: one bad value
                # must not spoil every later partial message of the device.
                return made
            if self.merge:
                state.merged = record
            out.append(made)
        return Converted(tuple(out), tuple(problems))

    # -- device ------------------------------------------------------------------------------
    def _device(self, levels: list[str], doc: Any) -> Device | Rejection:
        spec = self.device_spec
        value: Any = _MISSING
        if self.device_path is not None:
            value = _get(doc, self.device_path[1])
        if (value is _MISSING or value in (None, "")) and spec.topic_level is not None:
            value = levels[spec.topic_level] if spec.topic_level < len(levels) else _MISSING
        if value is _MISSING or not isinstance(value, str | int) or value == "":
            return Rejection(MALFORMED_ENVELOPE, "no device id where the source says it is")
        external = str(value)
        if spec.lookup == "id":
            try:
                device = self.registry.device(check_id(external, "device_id"))
            except TopicError as exc:
                return Rejection(UNKNOWN_DEVICE, str(exc))
        else:
            if spec.lookup == "dev_eui":
                external = _dev_eui_text(external)
            device = self.registry.device_by_external_id(spec.lookup, external)
        if device is None:
            return Rejection(
                UNKNOWN_DEVICE,
                f"no device in the registry has {spec.lookup} {external[:70]!r}",
            )
        if device.kind != self.kind.name:
            return Rejection(
                UNKNOWN_DEVICE,
                f"{spec.lookup} {external[:70]!r} is device {device.id!r}, a {device.kind}, "
                f"not a {self.kind.name}",
            )
        return device

    # -- one reading -------------------------------------------------------------------------
    def _reading(
        self,
        device: Device,
        doc: Any,
        record: dict[str, Any],
        state: _DeviceState,
        received_ms: int,
        problems: list[str],
    ) -> Outgoing | Rejection:
        values: dict[str, float | int | bool] = {}
        for spec in self.fields:
            got = self._value(spec, device, doc, record, state, problems)
            if isinstance(got, Rejection):
                return got
            if got is not None:
                values[spec.name] = got
        if not values:
            return Rejection(
                UNMAPPABLE,
                f"none of the fields {', '.join(f.name for f in self.fields)} is in the message",
            )
        ts = self._timestamp(device, doc, record, received_ms)
        if isinstance(ts, Rejection):
            return ts
        body: dict[str, Any] = {"ts": ts, **values}
        if self.seq is not None:
            seq = _get(doc if self.seq[0] else record, self.seq[1])
            numeric = isinstance(seq, int | float) and not isinstance(seq, bool)
            if numeric and seq >= 0 and float(seq).is_integer():
                body["seq"] = int(seq)
        where, topic = self._topic(device)
        payload = json.dumps(body, separators=(",", ":")).encode()
        judged = judge_telemetry(
            where, payload, now_ms=received_ms, max_future_ms=self.max_future_ms
        )
        if not isinstance(judged, Reading):
            if isinstance(judged, Rejection):
                return judged
            return Rejection(UNMAPPABLE, "not telemetry")
        return Outgoing(topic, payload, device.id)

    def _topic(self, device: Device) -> tuple[DeviceTopic, str]:
        known = self._topics.get(device.id)
        if known is None:
            where = DeviceTopic(
                self.topics.prefix, device.site, device.kind, device.id, "telemetry"
            )
            known = self._topics[device.id] = (where, str(where))
        return known

    def _value(
        self,
        spec: _Field,
        device: Device,
        doc: Any,
        record: dict[str, Any],
        state: _DeviceState,
        problems: list[str],
    ) -> float | int | bool | Rejection | None:
        raw: Any = _MISSING
        for envelope, path in spec.paths:
            raw = _get(doc if envelope else record, path)
            if raw is not _MISSING and raw is not None:
                break
        cfg = spec.spec
        if raw is _MISSING or raw is None:
            if cfg.default is None:
                return None
            raw = cfg.default
        if cfg.map is not None and not isinstance(raw, dict | list):
            key = str(raw).lower() if isinstance(raw, bool) else str(raw)
            if key in cfg.map:
                raw = cfg.map[key]
            elif not isinstance(raw, int | float) or isinstance(raw, bool):
                problems.append(f"{spec.name}: {str(raw)[:30]!r} is not in its map")
                return None
        if spec.flag:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, int | float) and raw in (0, 1):
                return bool(raw)
            problems.append(f"{spec.name}: {str(raw)[:30]!r} is not a flag")
            return None
        number = self._number(raw)
        if number is None:
            # e.g. an ultrasonic sensor that sees nothing reports text instead of a distance
            problems.append(f"{spec.name}: {str(raw)[:30]!r} is not a number")
            return None
        if cfg.unit is not None:
            number *= factor(cfg.unit)
        number = number * cfg.scale + cfg.offset
        if cfg.wrap is not None or cfg.accumulate:
            number = self._count(state, spec.name, number, cfg)
        if cfg.derive is not None:
            params = device.params
            if not isinstance(params, EwasteBinParams):
                return Rejection(NO_GEOMETRY, f"device {device.id!r} is no bin")
            if cfg.derive == "fill_from_weight":
                return params.fill_pct_from_weight(number)
            fill = params.fill_pct_from_distance(number)
            if fill is None:
                return Rejection(
                    NO_GEOMETRY,
                    f"bin {device.id!r} has no sensor_empty_mm/sensor_full_mm in the registry",
                )
            return fill
        if spec.integer:
            rounded = round(number)
            if abs(number - rounded) > 1e-6:
                problems.append(f"{spec.name}: {number!r} is not a whole number")
                return None
            return int(rounded)
        return round(number, 6)

    @staticmethod
    def _number(raw: Any) -> float | None:
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int | float):
            value = float(raw)
        elif isinstance(raw, str):
            match = _LEADING_NUMBER.match(raw)  # "92.0", "3.384 V"
            if match is None:
                return None
            value = float(match.group(1))
        else:
            return None
        return value if math.isfinite(value) else None

    @staticmethod
    def _count(state: _DeviceState, name: str, value: float, cfg: FieldSpec) -> float:
        counter = state.counters.setdefault(name, _Counter())
        if cfg.accumulate:
            counter.total += value
            return counter.total
        wrap = float(cfg.wrap or 0)
        last = counter.last_raw
        if last is not None and value < last:
            if last >= 0.75 * wrap and value < 0.25 * wrap:
                counter.offset += wrap  # a 16-bit total rolled over
            else:
                counter.offset = 0.0  # the device restarted its count: a reset, passed on
        counter.last_raw = value
        return value + counter.offset

    # -- time --------------------------------------------------------------------------------
    def _timestamp(
        self, device: Device, doc: Any, record: dict[str, Any], received_ms: int
    ) -> int | Rejection:
        spec = self.stamp
        for envelope, path in self.stamp_paths:
            raw = _get(doc if envelope else record, path)
            if raw is _MISSING or raw is None or raw == "":
                continue
            ts = self._parse_ts(raw, spec.format, device)
            if ts is None:
                return Rejection(INVALID_TS, f"time stamp {str(raw)[:40]!r} cannot be read")
            return ts
        if spec.missing == "reject":
            return Rejection(INVALID_TS, "the message has no time stamp")
        return received_ms

    def _parse_ts(self, raw: Any, form: str, device: Device) -> int | None:
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int | float):
            if not math.isfinite(raw) or raw < 0:
                return None
            if form == "unix_ms" or (form == "auto" and raw >= _SECONDS_BELOW):
                return int(raw)
            return round(raw * 1000)  # Shelly's params.ts: float seconds
        if not isinstance(raw, str):
            return None
        try:
            stamp = datetime.fromisoformat(raw)
        except ValueError:
            return None
        if stamp.tzinfo is None:
            if form != "local":
                return None  # no offset and nobody said whose clock it is
            zone = self.stamp_tz
            if zone is None:
                site = self.registry.site(device.site)
                zone = site.tzinfo if site is not None else _tz("UTC")
            stamp = stamp.replace(tzinfo=zone)
        try:
            return iso_to_ms(stamp.isoformat())
        except ValueError:
            return None
