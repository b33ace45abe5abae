"""The cities the collection policy is measured on (``config/cities/<name>.yaml``): either the
registry file itself plus working time, or a city generated from zones and bin types.

A generated city is deterministic in its file (the layout's random draws are seeded by the
city's name), so every seed of every policy sees the same streets.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from common.devices import Registry, load_registry
from common.kinds import EwasteBinParams
from devices.simulator.models.ewaste_bin import DAILY_KG, WEEKDAY_FACTOR
from devices.simulator.shifts import Shifts, Window

ROOT = Path(__file__).resolve().parents[2]
CITIES_DIR = ROOT / "config" / "cities"
TZ = "Asia/Seoul"
# The bin model draws its bulk density at 0.8-1.05 x capacity / volume: full at ~92.5 %.
MEAN_FULL_SHARE = 0.925
MEAN_WEEKDAY = sum(WEEKDAY_FACTOR) / len(WEEKDAY_FACTOR)


@dataclass(frozen=True, slots=True)
class CityDef:
    name: str
    registry: Registry
    shifts: Shifts | None
    windows: dict[str, Window] = field(default_factory=dict)  # bin id -> access window
    fill_factor: dict[str, float] = field(default_factory=dict)  # bin id -> model knob
    # What facility-alerts is given as DEVICES_FILE: the registry file, or a generated one.
    registry_source: Path | dict[str, Any] = CITIES_DIR

    def write_registry(self, folder: Path) -> Path:
        if isinstance(self.registry_source, Path):
            return self.registry_source
        path = folder / f"{self.name}-devices.yaml"
        path.write_text(yaml.safe_dump(self.registry_source, sort_keys=False))
        return path


def city_names() -> list[str]:
    return sorted(p.stem for p in CITIES_DIR.glob("*.yaml"))


def load_city(name: str) -> CityDef:
    path = CITIES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown city {name!r} (known: {', '.join(city_names())})")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    tz = ZoneInfo(TZ)
    shifts = Shifts.parse(data["shifts"], tz) if data.get("shifts") else None
    named = {k: Window.parse(str(v)) for k, v in (data.get("windows") or {}).items()}
    if "registry" in data:
        registry_file = (path.parent / str(data["registry"])).resolve()
        registry = load_registry(registry_file)
        windows = {str(b): named[str(w)] for b, w in (data.get("access") or {}).items()}
        for device_id in windows:
            if registry.device(device_id) is None:
                raise ValueError(f"{path}: access names unknown bin {device_id}")
        return CityDef(name, registry, shifts, windows, {}, registry_file)
    return _generated(name, data, shifts, named)


def _fill_factor(spec: dict[str, Any]) -> float:
    """The bin model's ``fill_rate_factor`` that gives the type's mean kg a day."""
    base = DAILY_KG[spec["residential_type"]] * MEAN_WEEKDAY
    if "daily_kg" in spec:
        return float(spec["daily_kg"]) / base
    full_kg = MEAN_FULL_SHARE * float(spec["capacity_kg"])
    return full_kg / float(spec["fill_days"]) / base


def _generated(
    name: str, data: dict[str, Any], shifts: Shifts | None, named: dict[str, Window]
) -> CityDef:
    rng = random.Random(f"city-layout-{name}")
    types: dict[str, dict[str, Any]] = data["bin_types"]
    devices: list[dict[str, Any]] = []
    windows: dict[str, Window] = {}
    factors: dict[str, float] = {}
    n = 0
    for zone in data["zones"]:
        zone_ids: list[str] = []
        for type_name, count in zone["bins"].items():
            spec = types[type_name]
            for _ in range(int(count)):
                n += 1
                device_id = f"bin-{n:03d}"
                # Uniform over a disc around the zone's centre (sqrt: uniform in area).
                r = float(zone["radius_km"]) * math.sqrt(rng.random())
                angle = rng.uniform(0, 2 * math.pi)
                lat = float(zone["latitude"]) + r * math.cos(angle) / 111.0
                lon = float(zone["longitude"]) + r * math.sin(angle) / (
                    111.0 * math.cos(math.radians(float(zone["latitude"])))
                )
                devices.append(
                    {
                        "id": device_id,
                        "site": "ewaste",
                        "kind": "ewaste_bin",
                        "zone": zone["id"],
                        "residential_type": spec["residential_type"],
                        "capacity_kg": spec["capacity_kg"],
                        "volume_l": spec["volume_l"],
                        "interval_s": 300,
                        "latitude": round(lat, 5),
                        "longitude": round(lon, 5),
                    }
                )
                factors[device_id] = _fill_factor(spec)
                zone_ids.append(device_id)
        # Windows go to the zone's last bins (its small ones), never to a fast filler.
        for window_name, count in (zone.get("access") or {}).items():
            for device_id in zone_ids[len(zone_ids) - int(count) :]:
                windows[device_id] = named[window_name]
    source = {
        "sites": [{"id": "ewaste", "name": f"{name} e-waste bins", "timezone": TZ}],
        "depot": {"id": "depot", **data["depot"]},
        "trucks": data["trucks"],
        "devices": devices,
    }
    registry = Registry.model_validate(source)
    return CityDef(name, registry, shifts, windows, factors, source)


def monthly_kg(city: CityDef, days: int = 30) -> float:
    """The mean kg the city's bins receive in ``days`` (the model's rates, no noise)."""
    total = 0.0
    for device in city.registry.bins():
        params = device.params_of(EwasteBinParams)
        daily = DAILY_KG.get(params.residential_type, 7.0) * MEAN_WEEKDAY
        total += daily * city.fill_factor.get(device.id, 1.0) * days
    return total
