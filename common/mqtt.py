"""The one place that builds paho-mqtt 2.x clients the way every program needs them.

MQTT v5 by default (3.1.1 with ``MQTT_PROTOCOL=3.1.1``), TLS for ``mqtts://``, credentials,
Last Will, reconnect backoff, and persistent sessions (fixed client id, no clean start,
session expiry, Receive Maximum) for services that must not lose messages. Programs reach paho
only through :class:`MqttLink`'s hooks (connect, disconnect, message) and ``ack_many``; the one
use of paho's private surface (the batched PUBACK) lives here, pinned by
``tests/unit/test_mqtt_private_surface.py``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from common.redact import redact_url
from common.settings import CommonSettings

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


@dataclass(frozen=True, slots=True)
class Will:
    """Last Will: what the broker publishes for us when we vanish without a goodbye."""

    topic: str
    payload: bytes = b"offline"
    qos: int = 1
    retain: bool = True


OnConnect = Callable[[mqtt.Client, bool], object]
OnDisconnect = Callable[[], object]
OnSubscribed = Callable[[int], object]
"""Called with the packet id of a SUBSCRIBE once the broker has answered it (SUBACK)."""
OnPublished = Callable[[int, bool], object]
"""Called with the packet id of a QoS 1 PUBLISH once the broker has answered it (PUBACK), and
whether the broker refused it (an MQTT v5 reason code >= 0x80, e.g. not authorised). It runs
on paho's network thread while paho holds its outgoing-message lock: a hook must not wait for
a lock that a thread calling ``publish`` may hold."""


class Message(Protocol):
    """An inbound message as message handlers see it.

    paho's ``MQTTMessage`` satisfies it as is: no copy per message (ingest's hot path hands
    on tens of thousands a second), and no handler needs to import paho.
    """

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes | bytearray: ...
    @property
    def qos(self) -> int: ...
    @property
    def retain(self) -> bool: ...
    @property
    def mid(self) -> int: ...


MessageHandler = Callable[[Message], object]
"""Called on paho's network thread for every message; must be quick (hand over, not work)."""

PUBACK_PACKET = struct.Struct("!BBH")
"""A short-form PUBACK as paho's ``_send_command_with_mid`` packs it: fixed header 0x40,
remaining length 2, packet id (MQTT 5 allows the short form for reason code 0)."""

QueuePacket = Callable[[int, bytes, int, int], object]
"""paho's private ``Client._packet_queue(command, packet, mid, qos)``."""


def _packet_queue_of(client: mqtt.Client) -> QueuePacket | None:
    """paho's private packet queue, or None if this paho has none (ack one by one then)."""
    queue: QueuePacket | None = getattr(client, "_packet_queue", None)
    return queue


class MqttLink:
    """A paho client plus its connection policy; ``start()`` runs paho's network thread.

    ``on_connect`` hooks get ``(client, session_present)`` after every (re)connect so callers
    can (re)subscribe; paho reconnects by itself with exponential backoff.
    """

    def __init__(
        self,
        settings: CommonSettings,
        client_id: str,
        *,
        will: Will | None = None,
        persistent: bool = False,
        receive_maximum: int | None = None,
        manual_ack: bool = False,
        max_inflight: int = 100,
        max_queued: int = 0,
        tcp_nodelay: bool = False,
    ) -> None:
        self.settings = settings
        self.client_id = settings.mqtt_client_id or client_id
        self.persistent = persistent
        self.receive_maximum = receive_maximum
        self.tcp_nodelay = tcp_nodelay
        self.v5 = settings.mqtt_protocol == "5"
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.where = redact_url(settings.mqtt_url)
        """The broker's URL as logs and errors show it (no password)."""
        self._hooks: list[OnConnect] = []
        self._disconnect_hooks: list[OnDisconnect] = []
        self._subscribed_hooks: list[OnSubscribed] = []
        self._published_hooks: list[OnPublished] = []
        protocol = MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            # v3.1.1 expresses persistence at construction; v5 at connect (clean_start).
            clean_session=None if self.v5 else not persistent,
            manual_ack=manual_ack,
        )
        user, password = settings.mqtt_credentials()
        if user is not None:
            self.client.username_pw_set(user, password)
        if settings.mqtt_tls:
            ca = str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
            self.client.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
            if settings.mqtt_tls_insecure:
                self.client.tls_insecure_set(True)
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(max_queued)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect_fail = self._on_connect_fail
        self._queue_packet = _packet_queue_of(self.client)

    def add_on_connect(self, hook: OnConnect) -> None:
        self._hooks.append(hook)

    def add_on_disconnect(self, hook: OnDisconnect) -> None:
        """``hook()`` runs on paho's network thread after every lost or closed connection."""
        self._disconnect_hooks.append(hook)

    def add_on_subscribed(self, hook: OnSubscribed) -> None:
        """``hook(mid)`` runs on paho's network thread when a SUBSCRIBE's SUBACK arrives."""
        self._subscribed_hooks.append(hook)

    def add_on_published(self, hook: OnPublished) -> None:
        """``hook(mid, refused)`` runs on paho's network thread when a QoS 1 PUBLISH's PUBACK
        arrives.

        paho calls it holding its own lock of outgoing messages: a hook must not wait for a
        lock that a thread calling ``publish`` may hold."""
        self._published_hooks.append(hook)
        self.client.on_publish = self._on_publish  # links without hooks pay nothing per PUBACK

    def set_message_handler(self, handler: MessageHandler) -> None:
        """Every inbound message goes to ``handler(message)`` (one handler per link)."""

        def on_message(_client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
            handler(msg)

        self.client.on_message = on_message

    def ack_many(self, mids: Sequence[int]) -> None:
        """PUBACK these QoS 1 packet ids (``manual_ack`` links) with one queued write.

        ``client.ack`` per message queues one packet and wakes paho's loop through its socket
        pair each time (two system calls and a GIL hand-over per message). A run of PUBACKs
        is just their bytes back to back, so the batch goes out as one packet through the
        queue ``client.ack`` itself uses.
        """
        if not mids:
            return
        queue_packet = self._queue_packet
        if queue_packet is None:  # a paho without it: the public, per-message way
            for mid in mids:
                self.client.ack(mid, 1)
            return
        pack = PUBACK_PACKET.pack
        packet = b"".join([pack(mqtt.PUBACK, 2, mid) for mid in mids])
        queue_packet(mqtt.PUBACK, packet, mids[-1], 1)

    def _connect_properties(self) -> Properties | None:
        if not self.v5:
            return None
        props = Properties(PacketTypes.CONNECT)
        if self.persistent:
            props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        if self.receive_maximum:
            props.ReceiveMaximum = self.receive_maximum
        return props

    def start(self) -> None:
        """Connect in the background; paho retries with backoff until the broker answers."""
        kwargs: dict[str, Any] = {}
        if self.v5:
            kwargs["clean_start"] = not self.persistent
            kwargs["properties"] = self._connect_properties()
        self.client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=self.settings.mqtt_keepalive_s,
            **kwargs,
        )
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def stop(self) -> None:
        """Graceful disconnect (no Last Will) and stop the network thread."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self.connected.clear()

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused connection: {reason}"
            log.error("mqtt connect refused", extra={"broker": self.where, "reason": str(reason)})
            return
        self.last_error = None
        sock = client.socket()
        if self.tcp_nodelay and isinstance(sock, socket.socket):
            # paho leaves Nagle on: a message published right after a PUBACK would wait for
            # the broker's delayed ACK (~40 ms). Latency-bound clients turn it off.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.info(
            "mqtt connected",
            extra={
                "broker": self.where,
                "client_id": self.client_id,
                "session_present": flags.session_present,
            },
        )
        for hook in self._hooks:
            hook(client, flags.session_present)
        self.connected.set()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        # paho retries with backoff; one line per outage, not one per attempt.
        error = f"broker {self.where} not reachable"
        if self.last_error != error:
            self.last_error = error
            log.warning("mqtt broker not reachable; retrying", extra={"broker": self.where})

    def _on_subscribe(self, _client: mqtt.Client, _userdata: object, mid: int, *_: object) -> None:
        for hook in self._subscribed_hooks:
            hook(mid)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        refused = bool(reason.is_failure)
        for hook in self._published_hooks:
            hook(mid, refused)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self.connected.clear()
        if reason.is_failure:
            self.last_error = f"disconnected: {reason}"
            log.warning("mqtt disconnected", extra={"broker": self.where, "reason": str(reason)})
        for hook in self._disconnect_hooks:
            hook()
