"""Small MQTT helpers for tests against a real broker (paho-mqtt 2.x, callback API v2).

All waiting is bounded and event-driven (threading.Condition / Event), never a bare sleep:

* ``MessageCollector(url, "topic/#")`` - subscribe first (returns once the SUBACK is in),
  then act, then ``wait_for(count, timeout)`` the (topic, payload) pairs.
* ``collect_messages(url, topic_filter, count, timeout)`` - the one-shot version, for
  messages that are already there (retained) or published from another thread/process.
* ``publish(url, topic, payload, qos=1, retain=False)`` - returns after the broker has
  acknowledged it (PUBACK/PUBCOMP for QoS 1/2).
* ``connack_code(url, ...)`` - the CONNACK reason code a client would get (auth tests).
* ``bound_port(port_file, proc)`` - the /healthz port a service started with ``*_HTTP_PORT=0``
  bound (no test picks a free port that someone else may take before the service binds it).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

_ids = itertools.count(1)


class Message(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", ""):
        raise ValueError(f"only plain mqtt:// URLs are supported here, not {url!r}")
    return parts.hostname or "127.0.0.1", parts.port or 1883


def _client_id(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def _reason_value(reason: Any) -> int:
    return int(reason.value) if hasattr(reason, "value") else int(reason)


def nodelay_client(url: str, client_id: str, max_inflight: int) -> mqtt.Client:
    """A connected MQTT v5 client with Nagle off; its network loop is not started yet.

    paho leaves Nagle on, so a lone publish would wait ~40 ms for the previous ACK: benchmarks
    and the policy evaluation that time round trips need it off.
    """
    host, port = _host_port(url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.max_inflight_messages_set(max_inflight)
    client.connect(host, port)
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def _new_client(
    client_id: str | None,
    prefix: str,
    protocol: MQTTProtocolVersion,
    username: str | None,
    password: str | None,
) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or _client_id(prefix),
        protocol=protocol,
    )
    if username is not None:
        client.username_pw_set(username, password)
    return client


class MessageCollector:
    """A subscriber that records every message; use as a context manager.

    ``start()`` connects, subscribes to ``topic_filter`` (one or several) and returns once
    the broker granted the subscription, so anything published afterwards is delivered.
    """

    def __init__(
        self,
        url: str,
        topic_filter: str | Sequence[str],
        *,
        qos: int = 1,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        protocol: MQTTProtocolVersion = mqtt.MQTTv311,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        self.qos = qos
        self.connect_timeout = connect_timeout
        self._cond = threading.Condition()
        self._messages: list[Message] = []
        self._subscribed = threading.Event()
        self._failure: str | None = None
        self._client = _new_client(client_id, "collector", protocol, username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._started = False

    # paho callbacks (network thread)
    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if _reason_value(reason) != 0:
            self._failure = f"CONNACK refused: {reason}"
            self._subscribed.set()
            return
        client.subscribe([(f, self.qos) for f in self.filters])

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        refused = [r for r in reasons if _reason_value(r) >= 0x80]
        if refused:
            self._failure = f"SUBACK refused {self.filters}: {refused}"
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, msg.retain))
            self._cond.notify_all()

    def start(self) -> Self:
        host, port = _host_port(self.url)
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        self._started = True
        if not self._subscribed.wait(self.connect_timeout):
            self.stop()
            raise TimeoutError(f"no SUBACK from {self.url} within {self.connect_timeout:g}s")
        if self._failure is not None:
            self.stop()
            raise ConnectionError(self._failure)
        return self

    @property
    def received(self) -> list[Message]:
        """Everything received so far (a copy), with qos and retain flags."""
        with self._cond:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, bytes]]:
        """The first ``count`` (topic, payload) pairs; TimeoutError (listing them) if fewer."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                got = [(m.topic, m.payload) for m in self._messages]
                raise TimeoutError(
                    f"{len(got)} of {count} messages on {self.filters} within {timeout:g}s: "
                    f"{got[:20]}"
                )
            return [(m.topic, m.payload) for m in self._messages[:count]]

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def collect_messages(
    url: str,
    topic_filter: str | Sequence[str],
    count: int,
    timeout: float = 10.0,
    *,
    qos: int = 1,
    username: str | None = None,
    password: str | None = None,
) -> list[tuple[str, bytes]]:
    """Subscribe and return the first ``count`` (topic, payload) pairs received.

    Raises TimeoutError (with what did arrive) if fewer than ``count`` arrive in ``timeout``.
    """
    with MessageCollector(
        url, topic_filter, qos=qos, username=username, password=password
    ) as collector:
        return collector.wait_for(count, timeout)


@contextlib.contextmanager
def _connected(
    url: str, prefix: str, username: str | None, password: str | None, timeout: float
) -> Iterator[tuple[mqtt.Client, int]]:
    """An MQTT 3.1.1 client with its network loop running and the CONNACK code it got.

    TimeoutError if no CONNACK arrives within ``timeout``; disconnects on the way out.
    """
    host, port = _host_port(url)
    client = _new_client(None, prefix, mqtt.MQTTv311, username, password)
    codes: list[int] = []
    connected = threading.Event()

    def on_connect(
        _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        codes.append(_reason_value(reason))
        connected.set()

    client.on_connect = on_connect
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise TimeoutError(f"no CONNACK from {url} within {timeout:g}s")
        yield client, codes[0]
    finally:
        client.disconnect()
        client.loop_stop()


def publish(
    url: str,
    topic: str,
    payload: bytes | str,
    *,
    qos: int = 1,
    retain: bool = False,
    timeout: float = 10.0,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Publish one message and return once the broker acknowledged it (QoS 1/2)."""
    with _connected(url, "publisher", username, password, timeout) as (client, code):
        if code != 0:
            raise ConnectionError(f"CONNACK refused by {url}: code {code}")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"publish to {topic} not acknowledged within {timeout:g}s")


def connack_code(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 10.0,
) -> int:
    """Connect once (MQTT 3.1.1) and return the CONNACK code as paho reports it.

    paho 2.x maps v3.1.1 return codes to MQTT 5 reason codes: 0 accepted, 0x86 (134) bad
    user name or password (v3 code 4), 0x87 (135) not authorised (v3 code 5), ...
    """
    with _connected(url, "probe", username, password, timeout) as (_client, code):
        return code


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Poll ``predicate()`` until true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout:g}s: {predicate!r}")
        time.sleep(interval)


def bound_port(port_file: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """The port a service bound for /healthz, from the ``HTTP_PORT_FILE`` it was started with
    (with ``*_HTTP_PORT=0``); the file must not exist before the start."""

    def written() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before binding its HTTP port")
        return port_file.exists()

    wait_until(written, timeout=timeout)
    return int(port_file.read_text())
