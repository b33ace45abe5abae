"""The paho private surface ``MqttLink.ack_many`` relies on, pinned: if a paho upgrade renames
``Client._packet_queue``, changes its parameters, or packs a PUBACK differently, these fail
(instead of ingest silently falling back to one PUBACK per message, or crashing at run time).
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import paho.mqtt.client as mqtt
import pytest

from common.mqtt import PUBACK_PACKET, MqttLink
from common.settings import CommonSettings

MIDS = [1, 2, 300, 65535]


def _link(protocol: Literal["5", "3.1.1"]) -> MqttLink:
    # Built without reading the environment or .env: this test needs no broker.
    settings = CommonSettings.model_construct(mqtt_url="mqtt://127.0.0.1:1", mqtt_protocol=protocol)
    return MqttLink(settings, "surface-test", persistent=True, manual_ack=True)


def _queued(link: MqttLink) -> list[dict[str, Any]]:
    """What paho holds to send (no connection, so nothing leaves the queue)."""
    return [dict(packet) for packet in link.client._out_packet]


def test_packet_queue_keeps_the_signature_ack_many_calls() -> None:
    parameters = list(inspect.signature(mqtt.Client._packet_queue).parameters)
    assert parameters == ["self", "command", "packet", "mid", "qos", "info"]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_ack_many_uses_the_private_queue(protocol: Literal["5", "3.1.1"]) -> None:
    link = _link(protocol)
    assert link._queue_packet is not None, "paho has no Client._packet_queue any more"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_ack_many_queues_the_bytes_paho_would_send_one_by_one(
    protocol: Literal["5", "3.1.1"],
) -> None:
    ours, theirs = _link(protocol), _link(protocol)
    ours.ack_many(MIDS)
    for mid in MIDS:
        theirs.client.ack(mid, 1)
    (batched,) = _queued(ours)
    one_by_one = _queued(theirs)
    assert batched["packet"] == b"".join(p["packet"] for p in one_by_one)
    assert batched["to_process"] == len(batched["packet"]) == 4 * len(MIDS)
    assert (batched["command"], batched["qos"], batched["mid"]) == (mqtt.PUBACK, 1, MIDS[-1])
    assert {(p["command"], p["qos"]) for p in one_by_one} == {(mqtt.PUBACK, 1)}
    assert set(batched) == set(one_by_one[0])  # paho's _OutPacket fields, no more, no fewer


def test_puback_packing_is_the_mqtt_wire_format() -> None:
    assert PUBACK_PACKET.pack(mqtt.PUBACK, 2, 0x1234) == b"\x40\x02\x12\x34"


def test_without_the_private_queue_ack_many_acks_one_by_one() -> None:
    link, reference = _link("5"), _link("5")
    link._queue_packet = None
    link.ack_many(MIDS)
    for mid in MIDS:
        reference.client.ack(mid, 1)
    assert [p["packet"] for p in _queued(link)] == [p["packet"] for p in _queued(reference)]


def test_ack_many_of_nothing_queues_nothing() -> None:
    link = _link("5")
    link.ack_many([])
    assert _queued(link) == []
