"""common.mqtt against a real Mosquitto: persistent sessions, manual acks, Last Will."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from common.mqtt import MqttLink, Will
from common.settings import CommonSettings
from scripts.servers import MosquittoServer
from tests.helpers import MessageCollector, publish


def _settings(url: str, protocol: str = "5") -> CommonSettings:
    return CommonSettings(mqtt_url=url, mqtt_protocol=protocol, _env_file=None)  # type: ignore[call-arg,arg-type]


class Inbox:
    """Records (topic, payload) and wakes waiters; bounded waits only."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()

    def on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        with self.cond:
            self.items.append((msg.topic, msg.payload))
            self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[str, bytes]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= count, timeout), self.items
            return list(self.items)


def _subscriber(url: str, protocol: str, inbox: Inbox, client_id: str) -> MqttLink:
    link = MqttLink(_settings(url, protocol), client_id, persistent=True, receive_maximum=50)
    link.client.on_message = inbox.on_message
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
    link.client.on_message = again.on_message
    link.start()
    try:
        got = again.wait_for(5)
        assert sorted(p for _t, p in got) == [b"0", b"1", b"2", b"3", b"4"]
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
