"""Helpers for bridge tests: a real facility-bridge process, the sources and registry files it
reads, and real foreign messages (the fixtures of tests/fixtures/bridge) re-addressed and
re-stamped for a run."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from tests.integration.ingest_support import IngestProcess
from tests.unit.bridge.support import REGISTRY_YAML, fixture

LORA_BIN = "bin-lora-1"
LORA_BIN_EUI = "70B3D57ED005B89A"
EMPTY_MM, FULL_MM = 2500, 300  # bin-lora-1's geometry in REGISTRY_YAML
SHELLY = "shellypro4pm-f008d1d8b8b8"  # nzc-shelly-pro4


class BridgeProcess(IngestProcess):
    """``python -m services.bridge``, run, watched and killed like ingest."""

    module: ClassVar[str] = "services.bridge"
    http_port_variable: ClassVar[str] = "BRIDGE_HTTP_PORT"


def write_registry(tmp_path: Path) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(REGISTRY_YAML)
    return path


def ttn_source(broker_url: str | None, name: str = "ttn-bins") -> str:
    broker = f"    broker: {{url: '{broker_url}'}}\n" if broker_url else ""
    return (
        f"  - name: {name}\n{broker}"
        "    subscribe: v3/+/devices/+/#\n"
        "    preset: ttn_v3\n"
        "    kind: ewaste_bin\n"
        "    fields:\n"
        "      fill_pct: {path: distance, unit: mm, derive: fill_from_distance}\n"
        "      battery_pct: {path: battery}\n"
        "      tilted: {path: position, map: {normal: false, tilt: true}}\n"
    )


SHELLY_SOURCE = (
    "  - name: shelly-meters\n"
    "    subscribe: [+/events/rpc, +/status/+]\n"
    "    preset: shelly_gen2\n"
    "    kind: energy_meter\n"
    "    fields:\n"
    '      load_power_w: {path: "switch:0.apower"}\n'
    '      load_energy_wh: {path: "switch:0.aenergy.total", unit: Wh}\n'
)


CHIRPSTACK_GATES_SOURCE = (
    "  - name: chirpstack-gates\n"
    "    subscribe: application/+/device/+/event/+\n"
    "    preset: chirpstack_v4\n"
    "    kind: visitor_counter\n"
    "    fields:\n"
    "      entries_total: {path: [line_1_total_in, line_1.total_in]}\n"
    "      exits_total: {path: [line_1_total_out, line_1.total_out]}\n"
)


def chirpstack_people_count(ts_ms: int, entries: int, exits: int) -> tuple[str, bytes, int]:
    """A ChirpStack v4 uplink (fixture envelope, device uac-gate-lora) of a Milesight VS133
    (fixture decoded totals, as ChirpStack renders them: floats)."""
    data = fixture("chirpstack_v4_up_no_object.json")
    message: dict[str, Any] = copy.deepcopy(data["message"])
    totals = dict(fixture("milesight_vs133_decoded.json")["totals"])
    totals.update(line_1_total_in=entries, line_1_total_out=exits)
    message["object"] = {key: float(value) for key, value in totals.items()}
    message["time"] = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat()
    return data["topic"], json.dumps(message).encode(), ts_ms


def write_sources(tmp_path: Path, *sources: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n" + "".join(sources))
    return path


def bridge_env(broker_url: str, devices: Path, sources: Path, **extra: str) -> dict[str, str]:
    return {
        "MQTT_URL": broker_url,
        "DEVICES_FILE": str(devices),
        "BRIDGE_SOURCES_FILE": str(sources),
        **extra,
    }


def iso(ts_ms: int) -> str:
    """The Things Stack's way: RFC 3339 UTC with nanoseconds."""
    stamp = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{stamp}123Z"


def distance_for(fill_pct: float) -> int:
    return round(EMPTY_MM - fill_pct / 100 * (EMPTY_MM - FULL_MM))


def ttn_uplink(
    ts_ms: int, fill_pct: float, dev_eui: str = LORA_BIN_EUI, f_cnt: int = 1
) -> tuple[str, bytes, int]:
    """The Things Stack uplink (fixture envelope) of a Milesight EM310-UDL (fixture decoded
    payload) at ``ts_ms``, its distance the one ``fill_pct`` means in bin-lora-1."""
    message: dict[str, Any] = copy.deepcopy(fixture("ttn_v3_up_envelope.json")["message"])
    decoded = dict(fixture("milesight_em310_udl_decoded.json")["message"])
    decoded["distance"] = distance_for(fill_pct)
    message["end_device_ids"]["dev_eui"] = dev_eui
    message["received_at"] = iso(ts_ms)
    message["uplink_message"]["received_at"] = iso(ts_ms)
    message["uplink_message"]["f_cnt"] = f_cnt
    message["uplink_message"]["decoded_payload"] = decoded
    topic = f"v3/city-bins@ttn/devices/{dev_eui.lower()}/up"
    return topic, json.dumps(message).encode(), ts_ms


def ttn_join() -> tuple[str, bytes, int]:
    join = fixture("ttn_v3_join.json")
    return "v3/city-bins@ttn/devices/dev1/join", json.dumps(join["message"]).encode(), 0


def shelly_status(ts_s: float, apower: float, total_wh: float) -> tuple[str, bytes, int]:
    """A Shelly NotifyStatus (the docs' frame) carrying a full switch:0 status (fixture)."""
    notify: dict[str, Any] = copy.deepcopy(fixture("shelly_notifystatus_switch.json")["message"])
    switch = dict(fixture("shelly_status_switch.json")["message"])
    switch["apower"] = apower
    switch["aenergy"] = {**switch["aenergy"], "total": total_wh}
    notify["params"] = {"ts": ts_s, "switch:0": switch}
    return f"{SHELLY}/events/rpc", json.dumps(notify).encode(), round(ts_s * 1000)
