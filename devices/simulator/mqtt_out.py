"""MQTT side of the simulator: one connection per device (each with its own Last Will) or one
shared connection, bounded in-flight publishing, and the fleet's dispatch subscription."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from common.messages import DispatchRequest
from common.mqtt import Message, MqttLink, Will
from common.settings import CommonSettings
from common.topics import Topics
from devices.simulator.engine import FLEET_CLIENT, Outgoing

log = logging.getLogger(__name__)
SHARED = "shared"


class _Conn:
    """A link plus a count of unacknowledged QoS 1 messages (paho stalls if we overfill it)."""

    def __init__(self, link: MqttLink, window: int) -> None:
        self.link = link
        self.window = window
        self.pending = 0
        self.cond = threading.Condition()
        link.client.on_publish = self._on_publish

    def _on_publish(self, *_args: Any) -> None:
        with self.cond:
            self.pending -= 1
            self.cond.notify_all()

    def publish(self, message: Outgoing, stop: threading.Event) -> None:
        with self.cond:
            while self.pending >= self.window and not stop.is_set():
                self.cond.wait(0.5)
            self.pending += 1
        info = self.link.client.publish(
            message.topic, message.payload, qos=message.qos, retain=message.retain
        )
        # NO_CONN: paho keeps the message and sends it after reconnecting; still pending.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            with self.cond:
                self.pending -= 1
            log.warning("publish failed", extra={"topic": message.topic, "rc": int(info.rc)})

    def drain(self, deadline: float, stop: threading.Event | None = None) -> bool:
        with self.cond:
            while self.pending > 0:
                if stop is not None and stop.is_set():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
        return True


class MqttPublisher:
    """Publishes the engine's messages; ``clients`` maps a client key to its status topic
    (the Last Will topic), e.g. ``{"bin-001": "facility/ewaste/.../status"}``."""

    def __init__(
        self,
        settings: CommonSettings,
        topics: Topics,
        clients: dict[str, str],
        *,
        shared: bool = False,
        window: int = 100,
        on_dispatch: Callable[[DispatchRequest], None] | None = None,
    ) -> None:
        self.topics = topics
        self.stop_event = threading.Event()
        self.rejected_requests = 0
        base = settings.mqtt_client_id or "facility-sim"
        per_link = settings.model_copy(update={"mqtt_client_id": None})
        self._conns: dict[str, _Conn] = {}
        if shared:
            link = MqttLink(per_link, base, max_inflight=window)
            self._conns[SHARED] = _Conn(link, window)
        else:
            for key, status_topic in clients.items():
                will = Will(status_topic)
                link = MqttLink(per_link, f"{base}-{key}", will=will, max_inflight=window)
                self._conns[key] = _Conn(link, window)
        if shared:
            fleet = self._conns[SHARED]
        else:
            fleet_link = MqttLink(per_link, f"{base}-{FLEET_CLIENT}", max_inflight=window)
            fleet = self._conns[FLEET_CLIENT] = _Conn(fleet_link, window)
        if on_dispatch is not None:
            self._subscribe_dispatch(fleet.link, on_dispatch)

    def _subscribe_dispatch(
        self, link: MqttLink, on_dispatch: Callable[[DispatchRequest], None]
    ) -> None:
        topic = self.topics.dispatch_requests()

        def subscribe(client: mqtt.Client, _session_present: bool) -> None:
            client.subscribe(topic, qos=1)

        def on_message(msg: Message) -> None:
            try:
                request = DispatchRequest.model_validate_json(msg.payload)
            except ValidationError as exc:
                self.rejected_requests += 1
                log.warning("invalid dispatch request ignored", extra={"error": str(exc)[:300]})
                return
            log.info("dispatch request", extra={"dispatch_id": request.dispatch_id})
            on_dispatch(request)

        link.add_on_connect(subscribe)
        link.set_message_handler(on_message)

    def _conn(self, key: str) -> _Conn:
        return self._conns.get(key) or self._conns[SHARED]

    @property
    def links(self) -> Iterable[MqttLink]:
        return (c.link for c in self._conns.values())

    def start(self, timeout: float) -> None:
        """Connect every link; raise TimeoutError naming the broker if any does not answer."""
        for conn in self._conns.values():
            conn.link.start()
        deadline = time.monotonic() + timeout
        for key, conn in self._conns.items():
            if not conn.link.wait_connected(max(0.0, deadline - time.monotonic())):
                error = conn.link.last_error or "no answer"
                raise TimeoutError(
                    f"MQTT broker {conn.link.where} not reachable for {key} "
                    f"within {timeout:.0f} s ({error})"
                )

    def publish(self, message: Outgoing) -> None:
        self._conn(message.client).publish(message, self.stop_event)

    def flush(self, timeout: float) -> bool:
        """Wait until the broker acknowledged everything we sent."""
        deadline = time.monotonic() + timeout
        return all(conn.drain(deadline) for conn in self._conns.values())

    @property
    def shared(self) -> bool:
        return SHARED in self._conns

    def barrier(self, timeout: float) -> bool:
        """Wait until every connection's messages are acknowledged (or stop, or timeout):
        what was sent before now is then at the broker ahead of anything sent after."""
        deadline = time.monotonic() + timeout
        done = all(conn.drain(deadline, self.stop_event) for conn in self._conns.values())
        if not done and not self.stop_event.is_set():
            log.warning("broker slow to acknowledge; device streams may drift apart")
        return done

    def stop(self) -> None:
        self.stop_event.set()
        for conn in self._conns.values():
            conn.link.stop()
