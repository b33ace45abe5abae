"""The sources file (``config/sources.yaml``): which foreign messages facility-bridge takes, and
how each becomes contract readings. Validated at start; errors name the file, line and source
through the shared formatter (``common.config_errors``).
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common.config_errors import entry_name, format_errors, load_yaml
from common.devices import EXTERNAL_SCHEME_PATTERN
from common.fields import Id
from common.kinds import KINDS, KindName
from common.redact import redact_urls
from services.bridge.units import UNITS, dimension_of_field

__all__ = [
    "DEFAULT_SOURCES_FILE",
    "BrokerSpec",
    "DeviceSpec",
    "FieldSpec",
    "Path_",
    "PresetName",
    "Source",
    "SourcesError",
    "SourcesFile",
    "TimestampSpec",
    "compile_path",
    "load_sources",
]

DEFAULT_SOURCES_FILE: Final = Path("config/sources.yaml")

PresetName = Literal[
    "ttn_v3", "chirpstack_v4", "chirpstack_v3", "shelly_gen2", "tasmota", "zigbee2mqtt", "generic"
]
Derive = Literal["fill_from_distance", "fill_from_weight"]

Path_ = tuple[str | int, ...]
"""A compiled JSON path: keys and list indexes. ``envelope`` says it starts at the message
root rather than at the preset's decoded payload."""

_PATH_PART: Final = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_MODEL: Final = ConfigDict(frozen=True, extra="forbid")


class SourcesError(ValueError):
    """The sources file is missing, unreadable or invalid (the message names file and line)."""


def compile_path(text: str) -> tuple[bool, Path_]:
    """``a.b[0].c`` -> (False, ('a', 'b', 0, 'c')); a leading ``$.`` marks the envelope root.

    Keys may hold ``:`` (Shelly's ``em:0``) but not ``.`` or brackets."""
    envelope = text.startswith("$.") or text == "$"
    body = text[2:] if text.startswith("$.") else ("" if text == "$" else text)
    parts: list[str | int] = []
    pos = 0
    while pos < len(body):
        if body[pos] == "." and parts:
            pos += 1
        match = _PATH_PART.match(body, pos)
        if match is None:
            raise ValueError(f"{text!r} is not a path like a.b[0].c")
        key, index = match.groups()
        parts.append(int(index) if index is not None else key)
        pos = match.end()
    if not parts and not envelope:
        raise ValueError("a path must not be empty")
    return envelope, tuple(parts)


PathText = Annotated[str, Field(min_length=1, max_length=300)]


def _paths(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _compiled(value: list[str]) -> list[str]:
    for text in value:
        compile_path(text)
    return value


PathList = Annotated[list[PathText], BeforeValidator(_paths), AfterValidator(_compiled)]
"""One path or a list of alternatives (decoder versions), each checked to compile."""


class FieldSpec(BaseModel):
    """Where one contract field comes from and how its value is converted."""

    model_config = _MODEL

    path: PathList = Field(min_length=1)
    """Where the value is; several paths are alternatives, the first present wins (decoder
    versions name the same value differently: ``position`` vs ``tilt``)."""
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    map: dict[str, float | bool] | None = None
    """Text (or number, written as text) -> value, e.g. ``{normal: false, tilt: true}``."""
    derive: Derive | None = None
    wrap: Annotated[int, Field(ge=2)] | None = None
    """A counter that wraps at this modulus (65536 for a 16-bit total) is unwrapped."""
    accumulate: bool = False
    """The device sends counts per period: the bridge sums them into a total."""
    default: float | bool | None = None
    """Value when every path is absent (a network server that omits zero values)."""

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, value: str | None) -> str | None:
        if value is not None and value not in UNITS:
            raise ValueError(f"unknown unit {value!r} (known: {', '.join(UNITS)})")
        return value


class DeviceSpec(BaseModel):
    """How to find the device a message is from: a JSON path from the message root (``$.``
    optional) or a topic level (first that gives a value), then ``lookup``: ``id`` (the value
    is our device id) or an external id scheme of the registry (``dev_eui``, ``ttn``, ...)."""

    model_config = _MODEL

    path: PathText | None = None
    topic_level: Annotated[int, Field(ge=0, le=32)] | None = None
    lookup: Annotated[str, Field(pattern=EXTERNAL_SCHEME_PATTERN)] = "id"

    @field_validator("path")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_path(value)
        return value

    @model_validator(mode="after")
    def _somewhere(self) -> DeviceSpec:
        if self.path is None and self.topic_level is None:
            raise ValueError("device needs a path or a topic_level")
        return self


class TimestampSpec(BaseModel):
    """Where the reading's time is, in what form, and what to do without one."""

    model_config = _MODEL

    path: PathList = Field(default_factory=list)
    format: Literal["auto", "rfc3339", "unix_s", "unix_ms", "local"] = "auto"
    """``auto``: RFC 3339 text, or a number (seconds below 10^11, else milliseconds).
    ``local``: a wall-clock time without offset (Tasmota), in ``timezone`` or the site's."""
    timezone: str | None = None
    missing: Literal["receive_time", "reject"] = "receive_time"


class BrokerSpec(BaseModel):
    """A source's own broker (a network server's MQTT); credentials come from secrets."""

    model_config = _MODEL

    url: str
    username: str | None = None
    password_secret: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    """Name of a file in SECRETS_DIR (or variable BRIDGE_SECRET_<NAME>) holding the password."""
    ca_file: Path | None = None
    protocol: Literal["5", "3.1.1"] = "3.1.1"
    client_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not re.match(r"^(mqtts?|tcp|ssl)://[^/\s]+", value):
            raise ValueError("must be an mqtt:// or mqtts:// URL with a host")
        if re.match(r"^[a-z]+://[^/@]*:[^/@]*@", value):
            raise ValueError("put no password in the URL; use password_secret")
        return value


class Source(BaseModel):
    """One foreign source: subscription, format preset, device lookup, time, fields."""

    model_config = _MODEL

    name: Id
    broker: BrokerSpec | None = None
    subscribe: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(min_length=1)
    qos: Literal[0, 1] = 1
    preset: PresetName
    kind: KindName
    device: DeviceSpec | None = None
    timestamp: TimestampSpec | None = None
    merge: bool | None = None
    """Merge each message into the device's last known values (partial NotifyStatus)."""
    records: PathText | None = None
    """A list of records (history) at this path: one reading per record, paths relative to it."""
    seq: PathText | None = None
    fields: dict[str, FieldSpec] = Field(min_length=1)

    @field_validator("subscribe", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return _paths(value)

    @field_validator("subscribe")
    @classmethod
    def _filters(cls, value: list[str]) -> list[str]:
        for text in value:
            levels = text.split("/")
            if any(("#" in lv and lv != "#") or ("+" in lv and lv != "+") for lv in levels) or (
                "#" in levels[:-1]
            ):
                raise ValueError(f"{text!r} is not a valid MQTT topic filter")
        return value

    @field_validator("records", "seq")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_path(value)
        return value

    @field_validator("fields")
    @classmethod
    def _fields_of_kind(
        cls, value: dict[str, FieldSpec], info: ValidationInfo
    ) -> dict[str, FieldSpec]:
        kind_name = info.data.get("kind")
        if not isinstance(kind_name, str) or kind_name not in KINDS:
            return value  # the kind's own error is the one worth reading
        known = KINDS[kind_name].telemetry.value_fields
        for name, spec in value.items():
            if name not in known:
                raise ValueError(f"{name}: not a {kind_name} field (known: {', '.join(known)})")
            if spec.derive is not None:
                if name != "fill_pct" or kind_name != "ewaste_bin":
                    raise ValueError(f"{name}: derive gives an ewaste_bin's fill_pct only")
                wanted = "length" if spec.derive == "fill_from_distance" else "mass"
                if spec.unit is None or UNITS[spec.unit][0] != wanted:
                    raise ValueError(f"{name}: {spec.derive} needs a {wanted} unit")
                continue
            if spec.unit is not None and UNITS[spec.unit][0] != dimension_of_field(name):
                raise ValueError(
                    f"{name}: unit {spec.unit!r} measures {UNITS[spec.unit][0]}, "
                    f"{name} measures {dimension_of_field(name)}"
                )
        return value

    @model_validator(mode="after")
    def _device_for_generic(self) -> Source:
        if self.preset == "generic" and self.device is None:
            raise ValueError("a generic source needs device (path or topic_level)")
        return self


class SourcesFile(BaseModel):
    model_config = _MODEL

    sources: list[Source] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> SourcesFile:
        seen: set[str] = set()
        for i, source in enumerate(self.sources):
            if source.name in seen:
                raise ValueError(f"sources[{i}].name: duplicate source name {source.name!r}")
            seen.add(source.name)
        return self


def load_sources(path: str | Path = DEFAULT_SOURCES_FILE) -> SourcesFile:
    """Load and validate the sources file; SourcesError names file, line and source."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourcesError(f"{source}: cannot read sources file: {exc}") from exc
    document = load_yaml(text, source, SourcesError)
    data = document.data
    if not isinstance(data, dict):
        raise SourcesError(f"{source}: expected a mapping with a 'sources' list at top level")
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        return SourcesFile.model_validate(data)
    except ValidationError as exc:
        entry = partial(entry_name, data, labels={"sources": "source"}, key="name")
        # A URL's user-info is masked even when the error quotes what was written.
        message = format_errors(source, exc, document, entry=entry)
        raise SourcesError(redact_urls(message)) from None
