"""Device registry: sites, devices, e-waste bins, depot and trucks loaded from YAML.

Validated with pydantic (frozen models, unknown keys rejected); see config/devices.yaml.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from common.config_errors import entry_name, format_errors, load_yaml
from common.fields import (
    Id,
    Latitude,
    Longitude,
    PositiveFloat,
    PositiveInt,
    ResidentialType,
    Text,
)
from common.fields import registry_error as _custom_error
from common.kinds import (
    KINDS,
    EwasteBinParams,
    KindName,
    KindParams,
)

__all__ = [
    "DEFAULT_DEVICES_FILE",
    "RESIDENTIAL_TYPES",
    "Depot",
    "Device",
    "OpeningHours",
    "Registry",
    "RegistryError",
    "ResidentialType",
    "Site",
    "Truck",
    "Weekday",
    "haversine_km",
    "load_registry",
    "normalize_external_id",
]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

RESIDENTIAL_TYPES: Final[tuple[str, ...]] = get_args(ResidentialType)
WEEKDAYS: Final[tuple[str, ...]] = get_args(Weekday)

DEFAULT_DEVICES_FILE: Final = Path("config/devices.yaml")

EARTH_RADIUS_KM: Final = 6371.0088

_MODEL_CONFIG: Final = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
P = TypeVar("P", bound=KindParams)


class RegistryError(ValueError):
    """The device registry file is missing, unreadable or invalid."""


EXTERNAL_SCHEME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,31}$"
"""Names of external id schemes: ``dev_eui``, ``ttn``, ``chirpstack``, ``shelly``, ..."""
_EUI_SCHEMES: Final = frozenset({"dev_eui"})


def normalize_external_id(scheme: str, value: str) -> str:
    """The form external ids are compared in: a DevEUI is 16 upper-case hex digits whatever
    its separators or case (ChirpStack writes it lower-case, TTN upper-case); any other id
    is compared as written, without surrounding blanks."""
    text = value.strip()
    if scheme in _EUI_SCHEMES:
        return text.replace("-", "").replace(":", "").replace(" ", "").upper()
    return text


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres between two WGS84 points (degrees)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # Minimal images may lack tzdata; Korea has had no DST since 1988.
        if name == "Asia/Seoul":
            return timezone(timedelta(hours=9), "KST")
        if name in {"UTC", "Etc/UTC"}:
            return UTC
        raise


class OpeningHours(BaseModel):
    """Daily opening hours in the site's local time; `closed_days` e.g. ["mon"]."""

    model_config = _MODEL_CONFIG

    opens: time
    closes: time
    closed_days: tuple[Weekday, ...] = ()

    @field_validator("opens", "closes", mode="before")
    @classmethod
    def _hh_mm(cls, value: Any) -> Any:
        # Unquoted 10:00 is the integer 600 in YAML 1.1; insist on a quoted "HH:MM" string.
        if not isinstance(value, str | time):
            raise _custom_error('write times as quoted "HH:MM" strings, e.g. "10:00"')
        return value

    @model_validator(mode="after")
    def _order(self) -> OpeningHours:
        if self.opens >= self.closes:
            raise _custom_error("opens must be earlier than closes")
        return self

    def is_open(self, local: datetime) -> bool:
        """Whether the site is open at `local` (a wall-clock time in the site's zone)."""
        if WEEKDAYS[local.weekday()] in self.closed_days:
            return False
        return self.opens <= local.time() < self.closes


class Site(BaseModel):
    """A facility (or a distributed network such as the e-waste bins)."""

    model_config = _MODEL_CONFIG

    id: Id
    name: Text
    address: Text | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    timezone: str = "Asia/Seoul"
    capacity_people: PositiveInt | None = None
    opening_hours: OpeningHours | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            _tz(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise _custom_error(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _both_coordinates(self) -> Site:
        if (self.latitude is None) != (self.longitude is None):
            raise _custom_error("latitude and longitude must be given together")
        return self

    @property
    def tzinfo(self) -> tzinfo:
        return _tz(self.timezone)

    def local_time(self, at: datetime) -> datetime:
        """`at` (timezone-aware) converted to the site's local time."""
        if at.tzinfo is None:
            raise ValueError("datetime must be timezone-aware")
        return at.astimezone(self.tzinfo)

    def is_open(self, at: datetime) -> bool:
        """Whether the site is open at the aware datetime `at`; always True without hours."""
        if self.opening_hours is None:
            return True
        return self.opening_hours.is_open(self.local_time(at))


class Device(BaseModel):
    """One device: what every device has, and its kind's typed ``params``.

    In devices.yaml a kind's parameters sit beside the common keys; the kind's declaration in
    ``common.kinds`` says which keys those are, which are required and what they default to.
    """

    model_config = _MODEL_CONFIG

    id: Id
    site: Id
    kind: KindName
    interval_s: Annotated[int, Field(strict=True, ge=1, le=86_400)]
    name: Text | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    # Ids other systems know the device by (a LoRaWAN DevEUI, a network server's device id,
    # a Shelly id): facility-bridge finds the device of a foreign message through them.
    external_ids: dict[
        Annotated[str, Field(strict=True, pattern=EXTERNAL_SCHEME_PATTERN)],
        Annotated[str, Field(strict=True, min_length=1, max_length=128)],
    ] = Field(default_factory=dict)
    params: KindParams = KindParams()

    @field_validator("external_ids")
    @classmethod
    def _euis(cls, value: dict[str, str]) -> dict[str, str]:
        for scheme, external in value.items():
            normal = normalize_external_id(scheme, external)
            if scheme in _EUI_SCHEMES and (
                len(normal) != 16 or any(c not in "0123456789ABCDEF" for c in normal)
            ):
                raise _custom_error(f"external_ids.{scheme}: {external!r} is not a 64-bit EUI")
        return value

    @model_validator(mode="before")
    @classmethod
    def _kind_params(cls, data: Any) -> Any:
        """Split a flat registry entry into the common keys and the kind's ``params``."""
        if not isinstance(data, Mapping) or isinstance(data.get("params"), KindParams):
            return data
        common = {k: v for k, v in data.items() if k in _COMMON_KEYS}
        name = data.get("kind")
        kind = KINDS.get(name) if isinstance(name, str) else None
        if kind is None:
            return common  # the kind's own error is the one worth reading
        owners = {k: _owner_of(k, kind.name) for k in data if k not in _COMMON_KEYS}
        for other in KINDS:
            misplaced = sorted(k for k, o in owners.items() if o == other and data[k] is not None)
            if misplaced:
                raise _custom_error(
                    f"{other} field(s) {', '.join(misplaced)} not allowed on a {kind.name} device"
                )
        # null is as good as absent (a required key set to null is missing); unknown keys stay,
        # to be refused by name.
        own = {
            k: data[k]
            for k, owner in owners.items()
            if owner is None and (data[k] is not None or k not in kind.params.model_fields)
        }
        missing = [key for key in kind.required_keys() if data.get(key) is None]
        try:
            common["params"] = kind.params.model_validate(own)
        except ValidationError as exc:
            if not missing or any(e["type"] != "missing" for e in exc.errors()):
                raise  # a wrong value or key says more than what is missing
        if missing:
            raise _custom_error(f"{kind.name} requires {', '.join(missing)}")
        common.setdefault("interval_s", kind.default_interval_s)
        return common

    @model_validator(mode="after")
    def _coordinates(self) -> Device:
        if (self.latitude is None) != (self.longitude is None):
            raise _custom_error("latitude and longitude must be given together")
        return self

    def params_of(self, params_type: type[P]) -> P:
        """This device's parameters as ``params_type``; TypeError for a device of another kind."""
        if not isinstance(self.params, params_type):
            raise TypeError(f"device {self.id} is a {self.kind}, not {params_type.__name__}")
        return self.params


_COMMON_KEYS: Final = frozenset(Device.model_fields) - {"params"}


def _owner_of(key: str, kind: str) -> str | None:
    """The other kind whose parameter ``key`` is (None if it is ``kind``'s own, or nobody's)."""
    if key in KINDS[kind].params.model_fields:
        return None
    return next((k.name for k in KINDS.values() if key in k.params.model_fields), None)


class Depot(BaseModel):
    """Where collection trucks start and end their runs."""

    model_config = _MODEL_CONFIG

    id: Id = "depot"
    name: Text
    latitude: Latitude
    longitude: Longitude


class Truck(BaseModel):
    """An e-waste collection truck."""

    model_config = _MODEL_CONFIG

    id: Id
    name: Text | None = None
    capacity_kg: PositiveFloat
    speed_kmh: Annotated[float, Field(strict=True, gt=0, le=120)]
    stop_service_s: Annotated[int, Field(strict=True, ge=0, le=3600)] = 240


class Registry(BaseModel):
    """All sites, devices, the depot and trucks, with precomputed look-ups."""

    model_config = _MODEL_CONFIG

    sites: tuple[Site, ...]
    devices: tuple[Device, ...]
    depot: Depot
    trucks: tuple[Truck, ...] = ()

    _devices_by_id: dict[str, Device] = PrivateAttr(default_factory=dict)
    _sites_by_id: dict[str, Site] = PrivateAttr(default_factory=dict)
    _trucks_by_id: dict[str, Truck] = PrivateAttr(default_factory=dict)
    _by_kind: dict[str, tuple[Device, ...]] = PrivateAttr(default_factory=dict)
    _by_zone: dict[str, tuple[Device, ...]] = PrivateAttr(default_factory=dict)
    _zone_of: dict[str, str] = PrivateAttr(default_factory=dict)
    _tags: dict[tuple[str, str], dict[str, str]] = PrivateAttr(default_factory=dict)
    _by_external: dict[tuple[str, str], Device] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self) -> Registry:
        for field, ids in (
            ("sites", [s.id for s in self.sites]),
            ("trucks", [t.id for t in self.trucks]),
        ):
            first: dict[str, int] = {}
            for i, item_id in enumerate(ids):
                if item_id in first:
                    raise _custom_error(
                        f"{field}[{i}].id: duplicate id {item_id!r}"
                        f" (first at {field}[{first[item_id]}])"
                    )
                first[item_id] = i
        site_ids = {s.id for s in self.sites}
        first_device: dict[str, int] = {}
        for i, device in enumerate(self.devices):
            if device.id in first_device:
                raise _custom_error(
                    f"devices[{i}].id: duplicate device id {device.id!r}"
                    f" (first at devices[{first_device[device.id]}])"
                )
            first_device[device.id] = i
            if device.site not in site_ids:
                raise _custom_error(
                    f"devices[{i}].site: device {device.id!r} names unknown site {device.site!r}"
                    f" (known: {', '.join(sorted(site_ids))})"
                )
        owners: dict[tuple[str, str], str] = {}
        for i, device in enumerate(self.devices):
            for scheme, external in device.external_ids.items():
                key = (scheme, normalize_external_id(scheme, external))
                if key in owners:
                    raise _custom_error(
                        f"devices[{i}].external_ids.{scheme}: {external!r} is also device "
                        f"{owners[key]!r}'s"
                    )
                owners[key] = device.id
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._devices_by_id = {d.id: d for d in self.devices}
        self._sites_by_id = {s.id: s for s in self.sites}
        self._trucks_by_id = {t.id: t for t in self.trucks}
        by_kind: dict[str, list[Device]] = {}
        by_zone: dict[str, list[Device]] = {}
        zone_of: dict[str, str] = {}
        tags: dict[tuple[str, str], dict[str, str]] = {}
        for d in self.devices:
            by_kind.setdefault(d.kind, []).append(d)
            if isinstance(d.params, EwasteBinParams):
                zone_of[d.id] = d.params.zone
                by_zone.setdefault(d.params.zone, []).append(d)
            own_tags = d.params.tags()
            if KINDS[d.kind].located and d.latitude is not None and d.longitude is not None:
                # Where a truck drives to: the map places the bin by these (docs/architecture.md
                # "Coordinates on the map"). repr() is the shortest exact text of the float.
                own_tags |= {"latitude": repr(d.latitude), "longitude": repr(d.longitude)}
            if own_tags:
                tags[(d.site, d.id)] = own_tags
            for scheme, external in d.external_ids.items():
                self._by_external[(scheme, normalize_external_id(scheme, external))] = d
        self._by_kind = {k: tuple(v) for k, v in by_kind.items()}
        self._by_zone = {z: tuple(by_zone[z]) for z in sorted(by_zone)}
        self._zone_of = zone_of
        self._tags = tags

    def device(self, device_id: str) -> Device | None:
        return self._devices_by_id.get(device_id)

    def site(self, site_id: str) -> Site | None:
        return self._sites_by_id.get(site_id)

    def device_by_external_id(self, scheme: str, value: str) -> Device | None:
        """The device whose ``external_ids[scheme]`` is ``value`` (normalised), if any."""
        return self._by_external.get((scheme, normalize_external_id(scheme, value)))

    def truck(self, truck_id: str) -> Truck | None:
        return self._trucks_by_id.get(truck_id)

    def devices_of_kind(self, kind: str) -> tuple[Device, ...]:
        return self._by_kind.get(kind, ())

    def bins(self) -> tuple[Device, ...]:
        return self.devices_of_kind("ewaste_bin")

    def bins_in_zone(self, zone: str) -> tuple[Device, ...]:
        return self._by_zone.get(zone, ())

    def zone_of(self, device_id: str) -> str | None:
        """The collection zone of a registered bin; None for any other or unknown device.

        The one place that answers "which zone is this device in" for rule selectors, the
        dispatch desk and the simulator.
        """
        return self._zone_of.get(device_id)

    def zones(self) -> tuple[str, ...]:
        """Collection zones that have at least one bin, sorted."""
        return tuple(self._by_zone)

    def tags_for(self, site: str, device_id: str) -> dict[str, str]:
        """Extra InfluxDB tags of a known device (its kind's ``params.tags()``), else {}."""
        tags = self._tags.get((site, device_id))
        return dict(tags) if tags is not None else {}


REGISTRY_ENTRIES: Final = {"devices": "device", "sites": "site", "trucks": "truck"}
"""What an entry of each top-level list is called in an error message."""


def load_registry(path: str | Path = DEFAULT_DEVICES_FILE) -> Registry:
    """Load and validate the registry YAML; raises RegistryError naming the file and entry.

    Top-level keys starting with "x-" are ignored (they hold YAML anchors for templates).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{source}: cannot read device registry: {exc}") from exc
    document = load_yaml(text, source, RegistryError)
    data = document.data
    if not isinstance(data, dict):
        raise RegistryError(
            f"{source}: expected a mapping with sites, devices, depot and trucks at top level"
        )
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        entry = partial(entry_name, data, labels=REGISTRY_ENTRIES)
        raise RegistryError(format_errors(source, exc, document, entry=entry)) from None
