"""Registry external ids and bin sensor geometry; the contract's ewaste_bin without weight."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from common.devices import Registry, normalize_external_id
from common.kinds import EwasteBinParams
from common.payloads import Reading, Rejection, parse_message
from common.topics import Topics
from tests.unit.bridge.support import REGISTRY_YAML, registry


def registry_with(**bin_keys: Any) -> Registry:
    data = yaml.safe_load(REGISTRY_YAML)
    data["devices"][0].update(bin_keys)
    return Registry.model_validate(data)


def test_external_ids_find_their_device_whatever_the_eui_spelling() -> None:
    reg = registry()
    for spelling in ("24e124136b325190", "24-E1-24-13-6B-32-51-90", "24:e1:24:13:6b:32:51:90"):
        device = reg.device_by_external_id("dev_eui", spelling)
        assert device is not None and device.id == "bin-lora-2"
    assert reg.device_by_external_id("ttn", "dev-eu868-01").id == "bin-lora-1"  # type: ignore[union-attr]
    assert reg.device_by_external_id("ttn", "DEV-EU868-01") is None  # other ids: as written
    assert reg.device_by_external_id("dev_eui", "0000000000000000") is None


def test_an_external_id_belongs_to_one_device() -> None:
    data = yaml.safe_load(REGISTRY_YAML)
    data["devices"][1]["external_ids"] = {"dev_eui": "70b3d57ed005b89a"}  # bin-lora-1's
    with pytest.raises(ValidationError, match="is also device 'bin-lora-1'"):
        Registry.model_validate(data)


def test_a_dev_eui_must_be_64_bits() -> None:
    with pytest.raises(ValidationError, match="is not a 64-bit EUI"):
        registry_with(external_ids={"dev_eui": "70B3D57ED005"})
    assert normalize_external_id("shelly", " shellyplus1pm-a8 ") == "shellyplus1pm-a8"


def test_sensor_geometry_is_both_or_neither_and_full_is_nearer() -> None:
    with pytest.raises(ValidationError, match="given together"):
        registry_with(sensor_empty_mm=None)
    with pytest.raises(ValidationError, match="less than sensor_empty_mm"):
        registry_with(sensor_full_mm=2600)


def test_fill_from_distance_and_weight_clamp_to_the_bin() -> None:
    params = registry().device("bin-lora-1").params  # type: ignore[union-attr]
    assert isinstance(params, EwasteBinParams)
    assert params.fill_pct_from_distance(2500) == 0.0
    assert params.fill_pct_from_distance(300) == 100.0
    assert params.fill_pct_from_distance(1400) == 50.0
    assert params.fill_pct_from_distance(3000) == 0.0  # a reading below the floor: empty
    assert params.fill_pct_from_distance(50) == 100.0  # overfull: the lid sees the heap
    assert params.fill_pct_from_weight(150) == 50.0


def test_a_bin_reading_without_weight_is_accepted_with_its_alarm_flags() -> None:
    payload = {"ts": 1_700_000_000_000, "fill_pct": 91.5, "tilted": True, "battery_low": False}
    got = parse_message(
        "facility/ewaste/ewaste_bin/bin-001/telemetry",
        json.dumps(payload).encode(),
        Topics(),
        now_ms=1_700_000_000_000,
    )
    assert isinstance(got, Reading)
    assert got.fields == {"fill_pct": 91.5, "tilted": True, "battery_low": False}
    missing_fill = parse_message(
        "facility/ewaste/ewaste_bin/bin-001/telemetry",
        json.dumps({"ts": 1_700_000_000_000, "weight_kg": 3}).encode(),
        Topics(),
        now_ms=1_700_000_000_000,
    )
    assert isinstance(missing_fill, Rejection) and missing_fill.code == "missing_field"
