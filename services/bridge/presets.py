"""Format presets: what each foreign envelope looks like.

A preset tells an uplink from the other traffic of the same topic tree (joins, acks, downlink
events, status: skipped and counted, never dead-lettered), finds the decoded payload inside
the envelope, and gives the default device lookup and time stamp. Pure functions, no state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from common.payloads import INVALID_JSON, Rejection
from services.bridge.config import DeviceSpec, PresetName, TimestampSpec

MALFORMED_ENVELOPE: Final = "malformed_envelope"
NO_DECODED_PAYLOAD: Final = "no_decoded_payload"


@dataclass(frozen=True, slots=True)
class Uplink:
    """A message worth converting: ``data`` is where field paths start."""

    data: Any


@dataclass(frozen=True, slots=True)
class Skip:
    """A message of the source's tree that carries no reading; ``reason`` is counted."""

    reason: str


Classified = Uplink | Skip | Rejection
Classify = Callable[[list[str], Any], Classified]


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    classify: Classify
    device: DeviceSpec | None
    timestamp: TimestampSpec
    merge: bool = False


def _object(doc: Any, what: str) -> Rejection | None:
    if not isinstance(doc, dict):
        return Rejection(MALFORMED_ENVELOPE, f"{what} is not a JSON object")
    return None


# -- The Things Stack (TTN) v3: v3/{app}[@{tenant}]/devices/{device}/{event...} -----------------
def _ttn(levels: list[str], doc: Any) -> Classified:
    try:
        at = levels.index("devices")
    except ValueError:
        return Skip("not_uplink")
    event = "/".join(levels[at + 2 :])
    if event != "up":
        # join, down/queued|sent|ack|nack|failed, service/data, location/solved, ...
        return Skip(event.split("/", 1)[0] or "not_uplink")
    if bad := _object(doc, "a TTN uplink"):
        return bad
    uplink = doc.get("uplink_message")
    if not isinstance(uplink, dict):
        return Rejection(MALFORMED_ENVELOPE, "TTN uplink without an uplink_message object")
    decoded = uplink.get("decoded_payload")
    if not isinstance(decoded, dict):
        return Rejection(
            NO_DECODED_PAYLOAD,
            "uplink_message has no decoded_payload (no payload formatter on this device?)",
        )
    return Uplink(decoded)


# -- ChirpStack v4: application/{app}/device/{devEui}/event/{type} -------------------------------
def _chirpstack_v4(levels: list[str], doc: Any) -> Classified:
    if len(levels) < 2 or levels[-2] != "event":
        return Skip("not_uplink")
    if levels[-1] != "up":
        return Skip(levels[-1])  # join, ack, txack, status, log, location, integration
    if bad := _object(doc, "a ChirpStack uplink"):
        return bad
    if not isinstance(doc.get("deviceInfo"), dict):
        return Rejection(MALFORMED_ENVELOPE, "ChirpStack uplink without a deviceInfo object")
    decoded = doc.get("object")
    if not isinstance(decoded, dict):
        return Rejection(NO_DECODED_PAYLOAD, "uplink has no decoded object (no codec?)")
    return Uplink(decoded)


# -- ChirpStack v3: application/{id}/device/{devEUI}/rx (later: .../event/up) --------------------
_V3_OTHER: Final = frozenset({"join", "ack", "error", "status", "location", "txack"})


def _chirpstack_v3(levels: list[str], doc: Any) -> Classified:
    last = levels[-1] if levels else ""
    if last in _V3_OTHER:
        return Skip(last)
    if not (last == "rx" or (last == "up" and len(levels) > 1 and levels[-2] == "event")):
        return Skip(last if len(levels) > 1 and levels[-2] == "event" else "not_uplink")
    if bad := _object(doc, "a ChirpStack v3 uplink"):
        return bad
    decoded = doc.get("object")
    if decoded is None and isinstance(doc.get("objectJSON"), str) and doc["objectJSON"]:
        # The "JSON" marshaler carries the decoded object as a string of JSON, again.
        try:
            decoded = json.loads(doc["objectJSON"])
        except (ValueError, RecursionError):
            return Rejection(INVALID_JSON, "objectJSON is not valid JSON")
    if not isinstance(decoded, dict):
        return Rejection(NO_DECODED_PAYLOAD, "uplink has no object/objectJSON (no codec?)")
    return Uplink(decoded)


# -- Shelly Gen2+: {id}/events/rpc (NotifyStatus) and {id}/status/{component} --------------------
def _shelly(levels: list[str], doc: Any) -> Classified:
    if len(levels) >= 2 and levels[-2] == "status":
        if bad := _object(doc, "a Shelly component status"):
            return bad
        return Uplink({levels[-1]: doc})  # the same shape as NotifyStatus params
    if levels[-2:] != ["events", "rpc"]:
        return Skip(levels[-1] if levels else "not_uplink")  # online, rpc replies, ...
    if bad := _object(doc, "a Shelly RPC frame"):
        return bad
    method = doc.get("method")
    if method not in ("NotifyStatus", "NotifyFullStatus"):
        return Skip("event" if method == "NotifyEvent" else "not_uplink")
    params = doc.get("params")
    if not isinstance(params, dict):
        return Rejection(MALFORMED_ENVELOPE, f"{method} without a params object")
    return Uplink(params)


# -- Tasmota: tele/{topic}/SENSOR ------------------------------------------------------------
def _tasmota(levels: list[str], doc: Any) -> Classified:
    last = levels[-1] if levels else ""
    if last != "SENSOR":
        return Skip(last.lower() or "not_uplink")  # STATE, LWT, INFO1, RESULT, ...
    if bad := _object(doc, "a Tasmota SENSOR message"):
        return bad
    return Uplink(doc)


# -- Zigbee2MQTT: zigbee2mqtt/{friendly_name} ------------------------------------------------
_Z2M_OTHER: Final = frozenset({"availability", "set", "get"})


def _zigbee2mqtt(levels: list[str], doc: Any) -> Classified:
    if len(levels) >= 2 and levels[1] == "bridge":
        return Skip("bridge")
    if len(levels) > 2 and levels[-1] in _Z2M_OTHER:
        return Skip(levels[-1])
    if bad := _object(doc, "a Zigbee2MQTT device message"):
        return bad
    return Uplink(doc)


def _generic(_levels: list[str], doc: Any) -> Classified:
    if bad := _object(doc, "the message"):
        return bad
    return Uplink(doc)


PRESETS: Final[dict[str, Preset]] = {
    "ttn_v3": Preset(
        "ttn_v3",
        _ttn,
        DeviceSpec(path="$.end_device_ids.dev_eui", lookup="dev_eui"),
        TimestampSpec(path=["$.received_at", "$.uplink_message.received_at"]),
    ),
    "chirpstack_v4": Preset(
        "chirpstack_v4",
        _chirpstack_v4,
        DeviceSpec(path="$.deviceInfo.devEui", lookup="dev_eui"),
        # ``time`` is the deduplicated uplink's; v4.6 renamed the per-gateway ``time`` gwTime.
        TimestampSpec(path=["$.time", "$.rxInfo[0].gwTime", "$.rxInfo[0].time"]),
    ),
    "chirpstack_v3": Preset(
        "chirpstack_v3",
        _chirpstack_v3,
        DeviceSpec(path="$.devEUI", lookup="dev_eui"),
        TimestampSpec(path=["$.publishedAt", "$.rxInfo[0].time"]),
    ),
    "shelly_gen2": Preset(
        "shelly_gen2",
        _shelly,
        DeviceSpec(path="$.src", topic_level=0, lookup="shelly"),
        TimestampSpec(path=["$.params.ts"], format="unix_s"),
        merge=True,
    ),
    "tasmota": Preset(
        "tasmota",
        _tasmota,
        DeviceSpec(topic_level=1, lookup="tasmota"),
        TimestampSpec(path=["$.Time"], format="local"),
    ),
    "zigbee2mqtt": Preset(
        "zigbee2mqtt",
        _zigbee2mqtt,
        DeviceSpec(topic_level=1, lookup="zigbee2mqtt"),
        TimestampSpec(path=["$.last_seen"]),
        merge=True,
    ),
    "generic": Preset("generic", _generic, None, TimestampSpec(path=["$.ts"])),
}


def preset(name: PresetName) -> Preset:
    return PRESETS[name]
