"""Tests for the device registry (config/devices.yaml and common.devices)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.devices import (
    Device,
    Registry,
    RegistryError,
    haversine_km,
    load_registry,
)
from common.kinds import KINDS, EnergyMeterParams, EwasteBinParams, VisitorCounterParams

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "devices.yaml"

# Gwangmyeong-si lies roughly within these bounds.
LAT_MIN, LAT_MAX = 37.39, 37.50
LON_MIN, LON_MAX = 126.80, 126.91


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(SHIPPED)


@pytest.fixture
def raw() -> dict[str, Any]:
    """The shipped registry as plain data (templates already merged in), for mutation."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return copy.deepcopy({k: v for k, v in data.items() if not k.startswith("x-")})


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def index_of(data: dict[str, Any], device_id: str) -> int:
    return next(i for i, d in enumerate(data["devices"]) if d["id"] == device_id)


# --- the shipped registry -------------------------------------------------------------------


def test_shipped_registry_loads(registry: Registry) -> None:
    assert {s.id for s in registry.sites} == {"nzc", "uac", "ewaste"}
    assert registry.depot.name
    assert len(registry.trucks) >= 3
    assert all(1000 <= t.capacity_kg <= 1500 and t.speed_kmh > 0 for t in registry.trucks)


def test_shipped_bins(registry: Registry) -> None:
    bins = registry.bins()
    assert len(bins) >= 40
    assert bins == registry.devices_of_kind("ewaste_bin")
    assert registry.zones() == ("cheolsan", "gwangmyeong", "haan", "soha")
    params = [b.params_of(EwasteBinParams) for b in bins]
    assert {p.residential_type for p in params} == {"apartment", "row_house", "detached"}
    for b, p in zip(bins, params, strict=True):
        assert b.site == "ewaste"
        assert p.zone is not None and p.residential_type is not None
        assert registry.zone_of(b.id) == p.zone
        assert p.capacity_kg is not None and p.capacity_kg > 0
        assert p.volume_l is not None and p.volume_l > 0
        assert b.interval_s > 0
    assert sum(len(registry.bins_in_zone(z)) for z in registry.zones()) == len(bins)
    assert registry.bins_in_zone("nowhere") == ()
    assert registry.zone_of("uac-gate-main") is None  # only bins are in a collection zone
    assert registry.zone_of("no-such-device") is None


def test_apartments_have_more_and_bigger_bins(registry: Registry) -> None:
    def of(rtype: str) -> list[Device]:
        return [
            b for b in registry.bins() if b.params_of(EwasteBinParams).residential_type == rtype
        ]

    apt, row, det = of("apartment"), of("row_house"), of("detached")
    assert len(apt) > len(row) > 0
    assert len(apt) > len(det) > 0

    def kg(b: Device) -> float:
        return b.params_of(EwasteBinParams).capacity_kg

    assert min(kg(b) for b in apt) > max(kg(b) for b in row)
    assert min(kg(b) for b in row) > max(kg(b) for b in det)


def test_shipped_gates_and_meter(registry: Registry) -> None:
    gates = registry.devices_of_kind("visitor_counter")
    assert {g.id for g in gates} == {"uac-gate-main", "uac-gate-east"}
    assert all(g.site == "uac" and g.params_of(VisitorCounterParams).capacity_people for g in gates)
    (meter,) = registry.devices_of_kind("energy_meter")
    assert meter.site == "nzc"
    params = meter.params_of(EnergyMeterParams)
    assert params.pv_peak_w is not None and 10_000 <= params.pv_peak_w <= 30_000
    assert params.battery_kwh and params.base_load_w
    uac = registry.site("uac")
    assert uac is not None and uac.capacity_people == 300
    assert uac.opening_hours is not None and uac.opening_hours.closed_days == ("mon",)


def test_coordinates_inside_gwangmyeong(registry: Registry) -> None:
    points = [(d.id, d.latitude, d.longitude) for d in registry.devices]
    points += [(s.id, s.latitude, s.longitude) for s in registry.sites if s.latitude is not None]
    points.append(("depot", registry.depot.latitude, registry.depot.longitude))
    for name, lat, lon in points:
        if lat is None or lon is None:
            continue
        assert LAT_MIN < lat < LAT_MAX, name
        assert LON_MIN < lon < LON_MAX, name


def test_bins_cluster_by_zone(registry: Registry) -> None:
    for zone in registry.zones():
        bins = registry.bins_in_zone(zone)
        for a in bins:
            for b in bins:
                assert a.latitude is not None and a.longitude is not None
                assert b.latitude is not None and b.longitude is not None
                assert haversine_km(a.latitude, a.longitude, b.latitude, b.longitude) < 3.0


def test_lookups(registry: Registry) -> None:
    bin1 = registry.device("bin-001")
    assert bin1 is not None and bin1.kind == "ewaste_bin"
    assert registry.device("no-such-device") is None
    assert registry.site("nope") is None
    assert registry.truck("truck-1") is not None


def test_tags_for(registry: Registry) -> None:
    b = registry.bins()[0]
    assert registry.tags_for(b.site, b.id) == {
        "zone": b.params_of(EwasteBinParams).zone,
        "residential_type": b.params_of(EwasteBinParams).residential_type,
        "latitude": repr(b.latitude),
        "longitude": repr(b.longitude),
    }
    assert float(registry.tags_for(b.site, b.id)["latitude"]) == b.latitude
    assert registry.tags_for("ewaste", "bin-999") == {}
    assert registry.tags_for("uac", "uac-gate-main") == {}
    assert registry.tags_for("uac", b.id) == {}  # known bin, wrong site
    # Callers may not corrupt the cache by mutating the result.
    registry.tags_for(b.site, b.id)["zone"] = "x"
    assert registry.tags_for(b.site, b.id)["zone"] == b.params_of(EwasteBinParams).zone


def test_opening_hours(registry: Registry) -> None:
    uac = registry.site("uac")
    assert uac is not None
    # 2024-10-28 is a Monday; 03:00 UTC is 12:00 in Seoul.
    assert not uac.is_open(datetime(2024, 10, 28, 3, 0, tzinfo=UTC))
    assert uac.is_open(datetime(2024, 10, 29, 3, 0, tzinfo=UTC))
    assert not uac.is_open(datetime(2024, 10, 29, 9, 30, tzinfo=UTC))  # 18:30 KST
    with pytest.raises(ValueError):
        uac.is_open(datetime(2024, 10, 29, 12, 0))  # naive


def test_interval_defaults_per_kind() -> None:
    d = Device.model_validate({"id": "m", "site": "s", "kind": "energy_meter"})
    assert d.interval_s == KINDS["energy_meter"].default_interval_s


# --- bad files --------------------------------------------------------------------------------


def assert_rejected(tmp_path: Path, data: dict[str, Any], *fragments: str) -> str:
    path = write(tmp_path, data)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message
    return message


def test_duplicate_device_id(tmp_path: Path, raw: dict[str, Any]) -> None:
    i = index_of(raw, "bin-002")
    raw["devices"][i]["id"] = "bin-001"
    assert_rejected(tmp_path, raw, f"devices[{i}].id", "duplicate", "'bin-001'")


def test_unknown_site(tmp_path: Path, raw: dict[str, Any]) -> None:
    i = index_of(raw, "bin-007")
    raw["devices"][i]["site"] = "recycling"
    assert_rejected(tmp_path, raw, f"devices[{i}].site", "'bin-007'", "'recycling'")


@pytest.mark.parametrize("bad_id", ["Bin-7", "bin 7", "-bin", "", "b" * 65, "bin/7"])
def test_bad_device_id(tmp_path: Path, raw: dict[str, Any], bad_id: str) -> None:
    i = index_of(raw, "bin-007")
    raw["devices"][i]["id"] = bad_id
    assert_rejected(tmp_path, raw, f"devices[{i}].id")


@pytest.mark.parametrize("field", ["zone", "residential_type", "latitude", "capacity_kg"])
def test_bin_missing_field(tmp_path: Path, raw: dict[str, Any], field: str) -> None:
    i = index_of(raw, "bin-010")
    del raw["devices"][i][field]
    assert_rejected(tmp_path, raw, f"devices[{i}]", "'bin-010'", field)


def test_typo_key(tmp_path: Path, raw: dict[str, Any]) -> None:
    i = index_of(raw, "bin-003")
    raw["devices"][i]["capacty_kg"] = raw["devices"][i].pop("capacity_kg")
    assert_rejected(tmp_path, raw, f"devices[{i}].capacty_kg", "'bin-003'")


def test_typo_top_level_key(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["truks"] = raw.pop("trucks")
    assert_rejected(tmp_path, raw, "truks")


def test_non_positive_capacity(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["devices"][3]["capacity_kg"] = 0
    assert_rejected(tmp_path, raw, "devices[3].capacity_kg: Input should be greater than 0")


def test_bad_residential_type(tmp_path: Path, raw: dict[str, Any]) -> None:
    i = index_of(raw, "bin-001")
    raw["devices"][i]["residential_type"] = "villa"
    assert_rejected(tmp_path, raw, f"devices[{i}].residential_type", "'villa'")


def test_field_on_wrong_kind(tmp_path: Path, raw: dict[str, Any]) -> None:
    i = index_of(raw, "uac-gate-main")
    raw["devices"][i]["zone"] = "haan"
    assert_rejected(tmp_path, raw, f"devices[{i}]", "zone", "'uac-gate-main'")


def test_null_parameter_of_another_kind_is_allowed_but_an_unknown_key_is_not(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    i = index_of(raw, "uac-gate-main")
    raw["devices"][i]["zone"] = None
    loaded = load_registry(write(tmp_path, raw))
    gate = loaded.device("uac-gate-main")
    assert gate is not None and loaded.zone_of(gate.id) is None
    assert gate.params_of(VisitorCounterParams).capacity_people == 200
    raw["devices"][i]["zoen"] = None
    assert_rejected(tmp_path, raw, f"devices[{i}].zoen", "'uac-gate-main'")


def test_meter_base_load_above_peak(tmp_path: Path, raw: dict[str, Any]) -> None:
    i = index_of(raw, "nzc-meter-1")
    raw["devices"][i]["base_load_w"] = raw["devices"][i]["peak_load_w"] + 1
    assert_rejected(tmp_path, raw, f"devices[{i}]: base_load_w must not exceed peak_load_w")


def test_unquoted_opening_time(tmp_path: Path, raw: dict[str, Any]) -> None:
    uac = next(s for s in raw["sites"] if s["id"] == "uac")
    uac["opening_hours"]["opens"] = 600  # what YAML 1.1 makes of an unquoted 10:00
    assert_rejected(tmp_path, raw, "opening_hours.opens", "HH:MM")


def test_duplicate_truck(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["trucks"][1]["id"] = raw["trucks"][0]["id"]
    assert_rejected(tmp_path, raw, "trucks[1].id", "duplicate")


def test_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="expected a mapping"):
        load_registry(path)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text("sites: [\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="invalid YAML at line"):
        load_registry(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(tmp_path / "absent.yaml")


def test_registry_error_is_value_error() -> None:
    assert issubclass(RegistryError, ValueError)


# --- haversine ------------------------------------------------------------------------------


def test_haversine() -> None:
    assert haversine_km(37.47, 126.86, 37.47, 126.86) == 0.0
    # One degree of latitude is about 111.2 km anywhere.
    assert haversine_km(37.0, 126.86, 38.0, 126.86) == pytest.approx(111.2, abs=0.1)
    # Seoul City Hall -> Gwangmyeong City Hall (Cheolsan-dong): about 14 km.
    assert haversine_km(37.5663, 126.9779, 37.4786, 126.8647) == pytest.approx(14.0, abs=0.5)
    # Seoul City Hall -> Gwangmyeong Station (KTX, Iljik-dong): about 18.6 km.
    assert haversine_km(37.5663, 126.9779, 37.4164, 126.8848) == pytest.approx(18.6, abs=0.5)
    # Symmetric.
    assert haversine_km(37.4164, 126.8848, 37.5663, 126.9779) == pytest.approx(
        haversine_km(37.5663, 126.9779, 37.4164, 126.8848)
    )
