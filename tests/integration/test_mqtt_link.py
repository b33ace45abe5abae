"""common.mqtt against a real Mosquitto: persistent sessions, batched manual acks, Last Will."""

from __future__ import annotations

import threading

import pytest

from common.mqtt import Message, MqttLink, Will
from common.settings import CommonSettings
from tests.helpers import MessageCollector, publish
from tests.servers import MosquittoServer


def _settings(url: str, protocol: str = "5") -> CommonSettings:
    return CommonSettings(mqtt_url=url, mqtt_protocol=protocol, _env_file=None)  # type: ignore[call-arg,arg-type]


class Inbox:
    """Records (topic, payload) and packet ids, and wakes waiters; bounded waits only."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.mids: dict[bytes, int] = {}
        self.cond = threading.Condition()

    def on_message(self, msg: Message) -> None:
        with self.cond:
            self.items.append((msg.topic, bytes(msg.payload)))
            self.mids[bytes(msg.payload)] = msg.mid
            self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[str, bytes]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= count, timeout), self.items
            return list(self.items)


def _subscriber(
    url: str, protocol: str, inbox: Inbox, client_id: str, manual_ack: bool = False
) -> MqttLink:
    link = MqttLink(
        _settings(url, protocol),
        client_id,
        persistent=True,
        receive_maximum=50,
        manual_ack=manual_ack,
    )
    link.set_message_handler(inbox.on_message)
    link.add_on_connect(lambda client, _present: client.subscribe("t/#", qos=1))
    subscribed = threading.Event()
    link.client.on_subscribe = lambda *_args: subscribed.set()
    link.start()
    assert link.wait_connected(10)
    assert subscribed.wait(10)
    return link


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_persistent_session_receives_what_was_published_while_offline(
    mosquitto: MosquittoServer, protocol: str
) -> None:
    first = Inbox()
    link = _subscriber(mosquitto.url, protocol, first, "persistent-test")
    link.stop()
    for i in range(5):
        publish(mosquitto.url, f"t/{i}", str(i).encode(), qos=1)
    again = Inbox()
    link = MqttLink(_settings(mosquitto.url, protocol), "persistent-test", persistent=True)
    link.set_message_handler(again.on_message)
    link.start()
    try:
        got = again.wait_for(5)
        assert sorted(p for _t, p in got) == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        link.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_ack_many_acknowledges_exactly_the_given_messages(
    mosquitto: MosquittoServer, protocol: str
) -> None:
    """One batched PUBACK write reaches the broker: what it acked is gone from the session,
    what it left out is redelivered when the session resumes."""
    client_id = f"ack-many-{protocol}"
    first = Inbox()
    link = _subscriber(mosquitto.url, protocol, first, client_id, manual_ack=True)
    payloads = [str(i).encode() for i in range(6)]
    try:
        for i, payload in enumerate(payloads):
            publish(mosquitto.url, f"t/{i}", payload, qos=1)
        first.wait_for(len(payloads))
        link.ack_many([first.mids[p] for p in payloads if p not in (b"3", b"5")])
        # The broker handles one connection's packets in order: once it acknowledged this
        # publish, it has handled the PUBACKs before it. (Reconnecting at once could otherwise
        # take the session over while the old connection's last packets are still unread.)
        sync = link.client.publish("sync/ack-many", b"", qos=1)
        sync.wait_for_publish(10)
        assert sync.is_published()
    finally:
        link.stop()
    again = Inbox()
    link = _subscriber(mosquitto.url, protocol, again, client_id)
    try:
        publish(mosquitto.url, "t/marker", b"marker", qos=1)  # arrives after any redelivery
        got = again.wait_for(3)
        assert sorted(p for _t, p in got) == [b"3", b"5", b"marker"]
    finally:
        link.stop()


def test_last_will_is_published_when_the_client_vanishes(mosquitto: MosquittoServer) -> None:
    with MessageCollector(mosquitto.url, "dev/+/status") as seen:
        link = MqttLink(_settings(mosquitto.url), "device-x", will=Will("dev/x/status", b"offline"))
        link.start()
        assert link.wait_connected(10)
        # Drop the socket without DISCONNECT: the broker must send the Will.
        link.client.loop_stop()
        sock = link.client.socket()
        assert sock is not None
        sock.close()
        assert seen.wait_for(1, timeout=15) == [("dev/x/status", b"offline")]


def test_unreachable_broker_reports_not_connected() -> None:
    link = MqttLink(_settings("mqtt://127.0.0.1:1"), "nobody")
    link.start()
    try:
        assert not link.wait_connected(1.5)
        assert not link.connected.is_set()
    finally:
        link.stop()
