"""Wires facility-bridge together: sources file + registry -> converters, one MQTT link per
source broker, one to ours (which also carries the sources without a broker of their own),
and the delivery ledger that acknowledges a source message only
once our broker has acknowledged everything made from it.

Delivery is ingest's promise: a source message (QoS 1, persistent session) is PUBACKed to its
broker only after our broker PUBACKed every reading made from it, or the dead letter it became.
A bridge killed at any instant leaves the message unacknowledged, so its broker delivers it
again and the readings are published again: at least once, and since a reading's time stamp
is its identity in InfluxDB, a replay overwrites instead of counting twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import SecretStr

from common.devices import Registry, RegistryError, load_registry
from common.messages import DeadLetter
from common.mqtt import Message, MqttLink
from common.payloads import Rejection
from common.runtime import StartupError
from common.settings import DEFAULT_SECRETS_DIR
from common.timestamps import ms_to_iso
from common.topics import Topics
from services.bridge.config import Source, SourcesError, load_sources
from services.bridge.mapping import Converted, Converter
from services.bridge.metrics import BridgeMetrics
from services.bridge.presets import Skip
from services.bridge.settings import BridgeSettings

log = logging.getLogger(__name__)

CLIENT_ID = "facility-bridge"
DEADLETTER_PROGRAM = "bridge"
ACK_BATCH = 64

AckSource = Callable[[bool], None]
"""Called once our broker answered everything made from a source message: True when it took
all of it (acknowledge the source message), False when it refused some (hold it)."""


@dataclass(slots=True)
class _Entry:
    """One source message waiting for our broker: how many PUBACKs are still due."""

    remaining: int
    on_done: AckSource
    failed: bool = False


class Ledger:
    """Maps our publishes' packet ids to the source message they came from.

    ``publish_all`` runs on a source's network thread, ``on_published`` on our link's: paho
    calls the latter holding its outgoing-message lock, which ``publish`` takes too, so the
    ledger's own lock is never held across a ``publish`` (a PUBACK that beats its entry into
    the ledger is parked in ``_early``).
    """

    def __init__(self, client: mqtt.Client, metrics: BridgeMetrics) -> None:
        self.client = client
        self.metrics = metrics
        self._lock = threading.Lock()
        self._pending: dict[int, _Entry] = {}
        self._early: dict[int, bool] = {}  # PUBACKs that beat their entry: mid -> refused
        self.refused = 0
        self._idle = threading.Condition(self._lock)
        metrics.inflight.set_function(lambda: len(self._pending))

    def publish_all(self, messages: list[tuple[str, bytes]], on_done: AckSource) -> None:
        entry = _Entry(remaining=len(messages) + 1, on_done=on_done)  # +1: until all are sent
        for topic, payload in messages:
            info = self.client.publish(topic, payload, qos=1)
            with self._lock:
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    entry.failed = True  # never acknowledged: its broker delivers it again
                    log.error(
                        "paho refused to queue a reading (packet id in use)", extra={"topic": topic}
                    )
                elif info.mid in self._early:
                    if self._early.pop(info.mid):
                        entry.failed = True  # refused before we filed it (counted then)
                    entry.remaining -= 1
                else:
                    self._pending[info.mid] = entry
        self._settle(entry)

    def on_published(self, mid: int, refused: bool) -> None:
        with self._lock:
            entry = self._pending.pop(mid, None)
            if entry is None:
                if len(self._early) < 100_000:
                    self._early[mid] = refused
                if refused:
                    self.refused += 1
                    self.metrics.refused.inc()
                return
            if refused:
                # Our broker took the packet but not the reading (its ACL, a quota): the source
                # message is held unacknowledged rather than lost, and /healthz says so.
                entry.failed = True
                self.refused += 1
        if refused:
            self.metrics.refused.inc()
            log.error("our broker refused a reading; its source message is held")
        self._settle(entry)

    def _settle(self, entry: _Entry) -> None:
        with self._lock:
            entry.remaining -= 1
            done = entry.remaining == 0
            if not self._pending:
                self._idle.notify_all()
        if done:
            entry.on_done(not entry.failed)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once nothing published waits for our broker (within ``timeout_s``)."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._pending, timeout_s)

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._pending)


def _secret(name: str) -> str:
    """A source broker's password: ``BRIDGE_SECRET_<NAME>`` or the file SECRETS_DIR/<name>."""
    env = os.environ.get("BRIDGE_SECRET_" + name.upper().replace("-", "_").replace(".", "_"))
    if env is not None:
        return env
    path = Path(os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR)) / name
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StartupError(
            f"BRIDGE_SOURCES_FILE: password_secret {name!r}: neither BRIDGE_SECRET_"
            f"{name.upper()} nor {path} is readable ({exc.strerror})"
        ) from None


def _source_settings(settings: BridgeSettings, source: Source) -> BridgeSettings:
    """The settings a source's link connects with: ours, or its own broker's."""
    broker = source.broker
    client_id = f"{settings.mqtt_client_id or CLIENT_ID}-{source.name}"
    if broker is None:
        return settings.model_copy(update={"mqtt_client_id": client_id})
    password = SecretStr(_secret(broker.password_secret)) if broker.password_secret else None
    return settings.model_copy(
        update={
            "mqtt_url": broker.url,
            "mqtt_username": broker.username,
            "mqtt_password": password,
            "mqtt_ca_file": broker.ca_file,
            "mqtt_protocol": broker.protocol,
            "mqtt_client_id": broker.client_id or client_id,
        }
    )


class SourceRunner:
    """One source: its MQTT link, converter and acknowledgements.

    A source with a ``broker:`` of its own gets a link of its own. A source on our broker
    (``shared``) subscribes through the bridge's one link to our broker: a second connection
    with the same username would take the first one's session over where the broker sets
    ``use_username_as_clientid``. Its messages then come through :class:`Router`, and its
    PUBACKs go out on that same link."""

    def __init__(
        self,
        source: Source,
        settings: BridgeSettings,
        converter: Converter,
        ledger: Ledger,
        topics: Topics,
        metrics: BridgeMetrics,
        shared: MqttLink | None = None,
    ) -> None:
        self.source = source
        self.converter = converter
        self.ledger = ledger
        self.metrics = metrics
        self.deadletter_topic = topics.deadletter(DEADLETTER_PROGRAM)
        self.own_link = shared is None
        self.link = shared or MqttLink(
            _source_settings(settings, source),
            f"{CLIENT_ID}-{source.name}",
            persistent=True,
            receive_maximum=settings.bridge_receive_maximum,
            manual_ack=True,
        )
        self.accepting = True
        # Label children bound once: a labels() look-up per message is a lock and a dict.
        self._received = metrics.received.labels(source.name)
        self._acked = metrics.acked.labels(source.name)
        self._readings = metrics.readings.labels(source.name)
        self._generation = 0
        self._generation_lock = threading.Lock()
        # PUBACKs due to the source broker go out in batches (one packet, one wake-up of
        # paho's thread): when this source has nothing in flight at our broker, when a batch
        # is full, or before the next source message is handled.
        self._due: list[tuple[int, int]] = []  # (connection generation, packet id)
        self._in_flight = 0
        self._rejected_logged = 0
        if self.own_link:
            self.link.set_message_handler(self.on_message)
        self.link.add_on_connect(self._on_connect)
        self.link.add_on_disconnect(self._new_connection)

    def _on_connect(self, client: mqtt.Client, session_present: bool) -> None:
        self._new_connection()
        self.metrics.source_up.labels(self.source.name).set(1)
        filters: list[tuple[str, int]] = [(f, self.source.qos) for f in self.source.subscribe]
        client.subscribe(filters)
        log.info(
            "source subscribed",
            extra={
                "source": self.source.name,
                "broker": self.link.where,
                "filters": self.source.subscribe,
                "session_present": session_present,
            },
        )

    def _new_connection(self) -> None:
        # Packet ids of an old connection mean nothing now: those messages come again.
        with self._generation_lock:
            self._generation += 1
        if not self.link.connected.is_set():
            self.metrics.source_up.labels(self.source.name).set(0)

    def _acker(self, msg: Message) -> AckSource:
        """The message's acknowledgement, to call once our broker answered all it became."""
        mid, qos = msg.mid, msg.qos
        generation = self._generation  # an int read needs no lock; the flush compares
        acked = self._acked
        with self._generation_lock:
            self._in_flight += 1

        def ack(ok: bool) -> None:
            if ok:
                acked.inc()
            with self._generation_lock:
                self._in_flight -= 1
                if qos and ok:
                    self._due.append((generation, mid))
                flush = self._in_flight == 0 or len(self._due) >= ACK_BATCH
            if flush:
                self.flush_acks()

        return ack

    def flush_acks(self) -> None:
        """Send the PUBACKs that are due, those of an older connection left out (its broker
        delivers those messages again)."""
        with self._generation_lock:
            if not self._due:
                return
            mids = [mid for generation, mid in self._due if generation == self._generation]
            self._due.clear()
            if mids:
                self.link.ack_many(mids)

    def on_message(self, msg: Message) -> None:
        """On the source link's network thread: convert, publish, acknowledge when done."""
        if not self.accepting:
            return  # stopping: left unacknowledged, delivered again to the next run
        try:
            self._handle(msg)
        except Exception:
            # Our own bug, not the source's: the message stays unacknowledged (its broker
            # delivers it again after a reconnect) and paho's thread goes on with the next.
            log.exception("failed to handle a source message", extra={"source": self.source.name})

    def _handle(self, msg: Message) -> None:
        self.flush_acks()
        name = self.source.name
        self._received.inc()
        received_ms = time.time_ns() // 1_000_000
        payload = bytes(msg.payload)
        outcome = self.converter.convert(msg.topic, payload, received_ms)
        ack = self._acker(msg)
        if isinstance(outcome, Skip):
            self.metrics.skipped.labels(name, outcome.reason).inc()
            ack(True)
            return
        if isinstance(outcome, Rejection):
            self.metrics.rejected.labels(name, outcome.code).inc()
            self._log_rejection(msg.topic, outcome)
            letter = DeadLetter.build(
                DEADLETTER_PROGRAM,
                msg.topic,
                payload,
                outcome.code,
                f"source {name}: {outcome.reason}",
                ms_to_iso(received_ms),
            )
            self.ledger.publish_all(
                [(self.deadletter_topic, letter.model_dump_json().encode())], ack
            )
            return
        assert isinstance(outcome, Converted)
        if outcome.problems:
            self.metrics.field_problems.labels(name).inc(len(outcome.problems))
        count = len(outcome.readings)
        readings = self._readings

        def done(ok: bool) -> None:
            if ok:
                readings.inc(count)
            ack(ok)

        self.ledger.publish_all([(r.topic, r.payload) for r in outcome.readings], done)

    def _log_rejection(self, topic: str, why: Rejection) -> None:
        self._rejected_logged += 1
        if self._rejected_logged <= 20 or log.isEnabledFor(logging.DEBUG):
            log.info(
                "source message dead-lettered",
                extra={
                    "source": self.source.name,
                    "topic": topic[:200],
                    "code": why.code,
                    "reason": why.reason[:300],
                },
            )


class Router:
    """The message handler of our link: each message goes to the first source on our broker
    whose subscription matches its topic (sources files order them; an overlap is routed
    once, so its PUBACK is sent once)."""

    def __init__(self, link: MqttLink, runners: list[SourceRunner]) -> None:
        self.link = link
        self.routes = [(f, r) for r in runners for f in r.source.subscribe]
        self.unrouted = 0

    def on_message(self, msg: Message) -> None:
        topic = msg.topic
        for sub, runner in self.routes:
            if mqtt.topic_matches_sub(sub, topic):
                runner.on_message(msg)
                return
        # A subscription of an older sources file kept by our persistent session: nobody
        # here converts it, and left unacknowledged it would hold a Receive Maximum slot.
        self.unrouted += 1
        if self.unrouted <= 20:
            log.warning(
                "message on our broker matches no source; acknowledged",
                extra={"topic": topic[:200]},
            )
        if msg.qos:
            self.link.ack_many([msg.mid])


def _load_registry(settings: BridgeSettings) -> Registry:
    try:
        return load_registry(settings.devices_file)
    except RegistryError as exc:
        raise StartupError(f"DEVICES_FILE: {exc}") from exc


class BridgeService:
    """One running bridge: build with settings, ``start()``, then ``stop(timeout_s)``."""

    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.topics = Topics(settings.mqtt_topic_prefix)
        try:
            self.sources = load_sources(settings.bridge_sources_file)
        except SourcesError as exc:
            raise StartupError(f"BRIDGE_SOURCES_FILE: {exc}") from exc
        self.registry = _load_registry(settings)
        self.metrics = BridgeMetrics()
        self.link = MqttLink(
            settings,
            CLIENT_ID,
            persistent=True,
            # Sources on our broker arrive on this link, acknowledged like a source broker's.
            receive_maximum=settings.bridge_receive_maximum,
            manual_ack=True,
            max_inflight=settings.bridge_max_inflight,
            tcp_nodelay=True,
        )
        self.ledger = Ledger(self.link.client, self.metrics)
        self.link.add_on_published(self.ledger.on_published)
        self.link.add_on_connect(lambda _c, _s: self.metrics.mqtt_up.set(1))
        self.link.add_on_disconnect(lambda: self.metrics.mqtt_up.set(0))
        self.runners = [
            SourceRunner(
                source,
                settings,
                Converter(
                    source,
                    self.registry,
                    self.topics,
                    max_source_bytes=settings.bridge_max_source_bytes,
                    max_future_ms=settings.max_future_ms,
                ),
                self.ledger,
                self.topics,
                self.metrics,
                shared=self.link if source.broker is None else None,
            )
            for source in self.sources.sources
        ]
        self.router = Router(self.link, [r for r in self.runners if not r.own_link])
        self.link.set_message_handler(self.router.on_message)

    def health(self) -> dict[str, Any]:
        ours = self.link.connected.is_set()
        sources = {
            r.source.name: {"connected": r.link.connected.is_set(), "error": r.link.last_error}
            for r in self.runners
        }
        refused = self.ledger.refused
        return {
            "healthy": ours and all(s["connected"] for s in sources.values()) and not refused,
            "mqtt": {"connected": ours, "error": self.link.last_error},
            "sources": sources,
            "inflight": self.ledger.inflight,
            "refused_readings": refused,
        }

    def start(self) -> None:
        self.link.start()
        # Our broker first: a source message is worth taking only once readings can leave.
        self.link.wait_connected(10)
        for runner in self.runners:
            if runner.own_link:
                runner.link.start()
        log.info(
            "bridge started",
            extra={"sources": [r.source.name for r in self.runners], "broker": self.link.where},
        )

    def stop(self, timeout_s: float) -> bool:
        """Stop taking source messages, wait (bounded) for our broker's acknowledgements so
        their source messages are acknowledged, then disconnect everything."""
        for runner in self.runners:
            runner.accepting = False
        done = self.ledger.wait_idle(timeout_s)
        for runner in self.runners:
            runner.flush_acks()
            if runner.own_link:
                runner.link.stop()  # DISCONNECT queues behind the acknowledgements just sent
        self.link.stop()
        log.info("bridge stopped", extra={"clean": done})
        return done
