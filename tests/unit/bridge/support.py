"""Shared pieces of the bridge tests: the fixtures (real messages, each naming its source), a
registry whose devices carry those messages' external ids, and a converter for a source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from common.devices import Registry
from common.topics import Topics
from services.bridge.config import Source, SourcesFile
from services.bridge.mapping import Converter

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bridge"
TOPICS = Topics("facility")
RECEIVED_MS = 1_780_000_000_000  # 2026-05-28, after every fixture's own time

# Geometry of the LoRaWAN bins: how far the lid sensor sees over an empty and a full bin.
REGISTRY_YAML = """
sites:
  - {id: ewaste, name: E-waste bins, timezone: Asia/Seoul}
  - {id: nzc, name: Net Zero Energy Cafe, timezone: Asia/Seoul}
  - {id: uac, name: Upcycle Art Center, timezone: Asia/Seoul}
depot: {name: Depot, latitude: 37.42683, longitude: 126.86402}
trucks:
  - {id: truck-1, capacity_kg: 1500, speed_kmh: 25}
devices:
  - id: bin-lora-1
    site: ewaste
    kind: ewaste_bin
    zone: cheolsan
    residential_type: apartment
    capacity_kg: 300
    volume_l: 1100
    latitude: 37.47673
    longitude: 126.86985
    sensor_empty_mm: 2500
    sensor_full_mm: 300
    external_ids: {dev_eui: 70B3D57ED005B89A, ttn: dev-eu868-01}
  - id: bin-lora-2
    site: ewaste
    kind: ewaste_bin
    zone: cheolsan
    residential_type: apartment
    capacity_kg: 300
    latitude: 37.47576
    longitude: 126.87297
    sensor_empty_mm: 1500
    sensor_full_mm: 200
    external_ids: {dev_eui: 24-E1-24-13-6B-32-51-90}
  - id: bin-cs3
    site: ewaste
    kind: ewaste_bin
    zone: cheolsan
    residential_type: row_house
    capacity_kg: 200
    latitude: 37.4762
    longitude: 126.873
    external_ids: {dev_eui: "0202020202020202"}
  - id: bin-soil
    site: ewaste
    kind: ewaste_bin
    zone: cheolsan
    residential_type: detached
    capacity_kg: 120
    latitude: 37.4747
    longitude: 126.8730
    external_ids: {dev_eui: A8404194A1875FF3}
  - id: nzc-shelly-1
    site: nzc
    kind: energy_meter
    external_ids:
      shelly: shellyplus1pm-a8032abe54dc
  - id: nzc-shelly-pro4
    site: nzc
    kind: energy_meter
    external_ids: {shelly: shellypro4pm-f008d1d8b8b8}
  - id: nzc-tasmota-1
    site: nzc
    kind: energy_meter
    external_ids: {tasmota: livingroom-lamp}
  - id: nzc-plug-1
    site: nzc
    kind: energy_meter
    external_ids: {zigbee2mqtt: Gniazdko Pralka}
  - id: uac-gate-lora
    site: uac
    kind: visitor_counter
    external_ids: {dev_eui: 24E124538B223213}
"""


def registry() -> Registry:
    return Registry.model_validate(yaml.safe_load(REGISTRY_YAML))


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    assert data.get("source"), f"fixture {name} names no source"
    return data


def source(text: str) -> Source:
    """One source from its YAML (as written under ``sources:``)."""
    return SourcesFile.model_validate({"sources": [yaml.safe_load(text)]}).sources[0]


def converter(text: str) -> Converter:
    return Converter(source(text), registry(), TOPICS)


def encode(message: Any) -> bytes:
    return json.dumps(message).encode()
