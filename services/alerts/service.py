"""The running service: MQTT in, ``AlertsCore`` on paho's thread and a ticker, effects out.

The core decides; this adapter only does I/O: it feeds the core MQTT messages and the wall
clock, and executes the effects the core returns (publishes, notifiers, points, metrics, logs).
State survives restarts through retained messages: active alerts (``P/alerts/active/...``)
and open dispatches (``P/alerts/_dispatch/{id}``) are read back before any telemetry is judged.

Inbound QoS 1 messages are acknowledged by hand, in arrival order, once judged and once what
they caused is durable (``acks.AckLedger``): the alert publishes PUBACKed by the broker, the
outbox records on disk. Until then the broker keeps them and redelivers them after a crash;
``ALERTS_RECEIVE_MAXIMUM`` bounds how many it hands over unacknowledged (and so how many are
held while the retained state is restored). That state and the sync marker are subscribed at
QoS 0, which Receive Maximum does not count, so a full window of held telemetry never keeps
them (and so the end of the hold) from coming through.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from common.devices import Registry
from common.mqtt import Message, MqttLink
from common.timestamps import ms_to_iso
from common.topics import Topics
from services.alerts.acks import AckLedger, Durable
from services.alerts.config import RulesFile
from services.alerts.core import (
    Accepted,
    AlertRefused,
    AlertsCore,
    ClearRetained,
    CoreSettings,
    DispatchClosed,
    DispatchPlanned,
    Effect,
    Held,
    Inbound,
    Log,
    Notify,
    Publish,
    Rejected,
    Retain,
    StateRestored,
    WritePoints,
)
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.apprise import AppriseNotifier
from services.alerts.notifiers.base import DeliveryQueue, Notifier, QueueArgs
from services.alerts.notifiers.influx import InfluxNotifier, InfluxWriter
from services.alerts.notifiers.mqtt import MqttNotifier, PublishFn
from services.alerts.notifiers.outbox import Outbox, OutboxError
from services.alerts.notifiers.webhook import JsonPoster, WebhookNotifier
from services.alerts.settings import AlertsSettings

log = logging.getLogger("services.alerts")

CLIENT_ID = "facility-alerts"
ACK_BATCH = 100
"""Acknowledgements gathered into one write (one wake-up of paho's loop instead of one per
message); at most a quarter of Receive Maximum, so the broker never waits for a batch."""
ACK_FLUSH_S = 0.005
"""How long fewer than a batch wait for more: then the acks thread sends them. Also bounds
the stall when the broker's window is smaller than a batch (a v3.1.1 broker's own limit)."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Notifiers:
    """The notifiers by role. MQTT is always on; the others are configured by settings."""

    mqtt: MqttNotifier
    influx: InfluxNotifier | None = None
    webhook: WebhookNotifier | None = None
    apprise: AppriseNotifier | None = None
    dispatch_hook: WebhookNotifier | None = None
    """Gets dispatch requests, not alerts."""

    def of_alerts(self) -> tuple[Notifier, ...]:
        """Who hears of each alert transition, MQTT first."""
        return tuple(n for n in (self.mqtt, self.influx, self.webhook, self.apprise) if n)

    def delivering(self) -> tuple[InfluxNotifier | WebhookNotifier | AppriseNotifier, ...]:
        """The ones with a delivery queue to flush at shutdown."""
        found = (self.influx, self.webhook, self.apprise, self.dispatch_hook)
        return tuple(n for n in found if n is not None)

    def journaling(self) -> tuple[DeliveryQueue, ...]:
        """The delivery queues with an outbox (a record on disk before an item counts)."""
        hooks = tuple(n.queue for n in (self.webhook, self.dispatch_hook) if n is not None)
        apprise = tuple(d.queue for d in self.apprise.destinations) if self.apprise else ()
        return hooks + apprise


@dataclass(frozen=True, slots=True)
class _Journaled:
    """What a message waits for when an outbox could not take the records it caused (disk
    full): every queue's records on disk. Conservative (later items count too), and only
    ever met while a disk is full."""

    queues: Sequence[DeliveryQueue]
    mid: int = 0

    def is_published(self) -> bool:
        return all(queue.unjournaled == 0 for queue in self.queues)


def build_notifiers(
    settings: AlertsSettings, publish: PublishFn, topics: Topics, metrics: AlertsMetrics
) -> Notifiers:
    limits: QueueArgs = {
        "base_s": settings.alerts_retry_base_s,
        "max_s": settings.alerts_retry_max_s,
        "max_items": settings.alerts_queue_max,
    }

    def outbox(notifier: str) -> Outbox:
        try:
            return Outbox(settings.alerts_state_dir / f"{notifier}.outbox")
        except OutboxError as exc:
            raise ValueError(f"ALERTS_STATE_DIR: {exc}") from exc

    secret = (
        settings.alerts_webhook_secret.get_secret_value().encode()
        if settings.alerts_webhook_secret
        else None
    )
    mqtt_notifier = MqttNotifier(publish, topics)
    influx = webhook = apprise = dispatch_hook = None
    if settings.alerts_influx_enabled:
        writer = InfluxWriter(settings)
        influx = InfluxNotifier(writer, metrics, mqtt_notifier.dead_letter, **limits)
    if settings.alerts_webhook_url:
        poster = JsonPoster(settings.alerts_webhook_url, secret)
        webhook = WebhookNotifier("webhook", poster, metrics, outbox("webhook"), **limits)
    if settings.alerts_dispatch_webhook_url:
        poster = JsonPoster(settings.alerts_dispatch_webhook_url, secret)
        dispatch_hook = WebhookNotifier(
            "dispatch_webhook", poster, metrics, outbox("dispatch_webhook"), **limits
        )
    if settings.apprise_urls:
        apprise = AppriseNotifier(
            settings.apprise_urls,
            settings.alerts_apprise_group_s,
            metrics,
            outbox("apprise"),
            **limits,
        )
    return Notifiers(mqtt_notifier, influx, webhook, apprise, dispatch_hook)


class AlertsService:
    def __init__(
        self,
        settings: AlertsSettings,
        rules: RulesFile,
        registry: Registry,
        metrics: AlertsMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.mqtt_topic_prefix)
        self.metrics = metrics or AlertsMetrics()
        self.core = AlertsCore(
            rules,
            registry,
            self.topics,
            CoreSettings(
                allowed_lateness_ms=int(settings.alerts_allowed_lateness_s * 1000),
                opportunistic_pct=settings.alerts_opportunistic_pct,
                dispatch_timeout_ms=settings.alerts_dispatch_timeout_s * 1000,
                live_lag_ms=settings.alerts_live_lag_s * 1000,
                unknown_devices=settings.unknown_devices,
                unknown_devices_max=settings.unknown_devices_max,
                history_max_points=settings.alerts_history_max_points,
                max_open_alerts=settings.alerts_max_open_alerts,
                max_future_ms=settings.max_future_ms,
            ),
            nonce=secrets.token_hex(8),
        )
        self.link = MqttLink(
            settings,
            CLIENT_ID,
            persistent=True,
            receive_maximum=settings.alerts_receive_maximum,
            manual_ack=True,
            max_inflight=1000,
            tcp_nodelay=True,
        )
        self._lock = threading.Lock()
        """The core's: one message or one tick judged at a time."""
        self._ack_lock = threading.Lock()
        """The ledger's; a leaf (nothing else is taken under it), because paho's PUBACK
        callback takes it while holding paho's own lock of outgoing messages."""
        self._ledger = AckLedger()
        self._ack_batch = max(1, min(ACK_BATCH, settings.alerts_receive_maximum // 4))
        self._ack_due = threading.Event()
        self._closing = False
        """Stopping: messages are no longer judged (left to the broker, redelivered later)."""
        self._produced: list[Durable] | None = None
        """QoS 1 publishes of the message being judged (on paho's thread), else None."""
        self._producer = 0
        self._history_points = 0
        self._wire(self.link)
        self.synced = threading.Event()
        self._sub_mid: int | None = None
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="alerts-ticker", daemon=True)
        self._acker = threading.Thread(target=self._run_acks, name="alerts-acks", daemon=True)
        self.started_at = 0.0
        self.notifiers = build_notifiers(settings, self._publish, self.topics, self.metrics)
        self._alert_notifiers = self.notifiers.of_alerts()
        self._journaling = self.notifiers.journaling()

    def _wire(self, link: MqttLink) -> None:
        """Every MQTT hook of the service, in one place."""
        link.set_message_handler(self._on_message)
        link.add_on_subscribed(self._on_subscribed)
        link.add_on_connect(self._subscribe)
        link.add_on_disconnect(self._new_connection)
        link.add_on_published(self._on_published)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.monotonic()
        self._worker.start()
        self._acker.start()
        self.link.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the clock, flush the HTTP notifiers, then leave the broker (which sends what
        paho still holds before the DISCONNECT)."""
        self._stop.set()
        self._worker.join(timeout)
        for notifier in self.notifiers.delivering():
            notifier.close(timeout)
        # No more judging; what is judged and durable is acknowledged before the DISCONNECT,
        # the rest (an alert publish not yet PUBACKed, messages not judged) is redelivered
        # at the next start.
        with self._lock:
            self._closing = True
        self._ack_due.set()
        self._acker.join(timeout)
        deadline = time.monotonic() + min(timeout, 2.0)
        while self.synced.is_set() and self._acknowledge(flush=True):
            if not self.link.connected.is_set() or time.monotonic() > deadline:
                break
            time.sleep(0.01)  # PUBACKs arrive on paho's thread; bounded by the deadline
        self.link.stop()  # not under the lock: paho's thread may be waiting for it

    def health(self) -> dict[str, Any]:
        connected = self.link.connected.is_set()
        core = self.core
        return {
            "healthy": connected and self._worker.is_alive() and self._acker.is_alive(),
            "mqtt_connected": connected,
            "mqtt_error": self.link.last_error,
            "state_restored": self.synced.is_set(),
            "live": core.live,
            "watermark": ms_to_iso(core.watermark_ms) if core.watermark_ms else None,
            "firing": core.firing_count(),
            "open_dispatches": len(core.open_dispatch_ids()),
            "unknown_devices": core.settings.unknown_devices,
            "unknown_devices_seen": core.unknown_devices_seen(),
            "unknown_devices_max": core.settings.unknown_devices_max,
            "unknown_devices_refused": core.refused_readings,
            "open_alerts": len(core.engine.lifecycle.alerts),
            "open_alerts_max": core.settings.max_open_alerts,
            "alerts_refused": core.refused_alerts,
            "history_points": self._history_points,
            "history_max_points": core.settings.history_max_points,
            "unacknowledged": len(self._ledger),
        }

    # -- MQTT callbacks (paho's thread) ----------------------------------------------------
    def _subscribe(self, client: mqtt.Client, _session_present: bool) -> None:
        self._new_connection()
        t = self.topics
        # State (retained, re-read at every start) and the marker at QoS 0: not counted by
        # Receive Maximum, so they pass a window full of held telemetry; nothing to ack.
        state = [t.all_active_alerts(), t.all_dispatch_records(), t.alerts_sync()]
        live = [t.all_dispatch_status(), t.all_telemetry(), t.all_status()]
        _, mid = client.subscribe([(f, 0) for f in state] + [(f, 1) for f in live])
        self._sub_mid = mid

    def _new_connection(self) -> None:
        with self._ack_lock:
            self._ledger.new_connection()

    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Every QoS 1 publish of the service; one made judging a message is remembered, and
        the message is acknowledged only once the broker has it."""
        info = self.link.client.publish(topic, payload, qos=1, retain=retain)
        produced = self._produced
        if produced is not None and threading.get_ident() == self._producer:
            produced.append(info)

    def _on_published(self, mid: int, refused: bool) -> None:
        # A refusal (MQTT v5 reason >= 0x80, e.g. the broker's ACL) is an answer too: holding
        # the input for it would stop every later acknowledgement; it is counted and logged.
        if refused:
            self.metrics.publish_refused.inc()
            log.warning("the broker refused a publish of ours", extra={"mid": mid})
        self._acknowledge(published_mid=mid)

    def _acknowledge(self, published_mid: int = 0, flush: bool = False) -> int:
        """Send the acknowledgements now due, a batch at a time (a short batch goes out
        from the acks thread); how many messages still wait."""
        with self._ack_lock:
            return self._send_acks(published_mid, flush)

    def _send_acks(self, published_mid: int, flush: bool) -> int:
        """``_acknowledge`` with the ledger's lock held."""
        ledger = self._ledger
        ready = ledger.settle(published_mid)
        if ready and (flush or ready >= self._ack_batch):
            self.link.ack_many(ledger.take_ready())
            ready = 0
        elif ready and not self._ack_due.is_set():
            self._ack_due.set()
        return len(ledger) + ready

    def _run_acks(self) -> None:
        """Sends the acknowledgements of a short batch ``ACK_FLUSH_S`` after it began."""
        while not self._stop.is_set():
            self._ack_due.wait()
            self._ack_due.clear()
            self._stop.wait(ACK_FLUSH_S)  # gather a few more first
            self._acknowledge(flush=True)

    def _judge(self, effects: list[Effect], mid: int) -> None:
        """Execute a message's effects, then enter it in the ledger with what it waits for.
        Lock held."""
        produced: list[Durable] = []
        self._produced, self._producer = produced, threading.get_ident()
        try:
            self._execute(effects)
        finally:
            self._produced = None
        held = released = False
        for effect in effects:
            if isinstance(effect, Held):
                held = True
            elif isinstance(effect, StateRestored):
                released = True
        if self._journaling and any(q.unjournaled for q in self._journaling):
            produced.append(_Journaled(self._journaling))
        with self._ack_lock:
            self._ledger.judged(mid, produced, held=held, releases_held=released)
            self._send_acks(0, False)

    def _on_subscribed(self, mid: int) -> None:
        # Retained messages of these subscriptions are queued to us before this marker, so
        # when it comes back every retained alert and dispatch is in.
        if mid == self._sub_mid and not self.synced.is_set():
            marker = self.core.sync_marker()
            self.link.client.publish(marker.topic, marker.payload, qos=1)

    def _on_message(self, msg: Message) -> None:
        # Judged right here on paho's thread: ~30 us a message, and no hand-over to another
        # thread (which under the GIL costs more than the judging at 5,000 msg/s).
        item = Inbound(msg.topic, bytes(msg.payload), time.monotonic(), msg.retain)
        mid = msg.mid if msg.qos else 0
        with self._lock:
            if self._closing:
                return  # not judged, so not acknowledged: the broker keeps it for next time
            try:
                self._judge(self.core.receive(item, wall_ms()), mid)
            except Exception:
                # A bug with one message must not stop the next one being judged (nor hold
                # back the acknowledgements of all behind it).
                log.exception("failed to process message", extra={"topic": msg.topic})
                with self._ack_lock:
                    self._ledger.judged(mid)
                    self._send_acks(0, False)

    # -- time ------------------------------------------------------------------------------
    def _run(self) -> None:
        """The ticker: live absence, keep_firing_for, repeats and dispatch timeouts."""
        while not self._stop.wait(self.settings.alerts_tick_s):
            with self._lock:
                try:
                    waited = time.monotonic() - self.started_at
                    if not self.synced.is_set() and waited > self.settings.alerts_sync_timeout_s:
                        log.warning("retained state not confirmed in time; judging anyway")
                        self._judge(self.core.finish_restoring(wall_ms()), 0)
                    self._tick()
                except Exception:
                    log.exception("tick failed")
            self._acknowledge(flush=True)  # the last few of a burst, and late PUBACKs

    def _tick(self) -> None:
        if not self.synced.is_set():
            return
        self._execute(self.core.tick(wall_ms()))
        self.metrics.pending.set(self.core.pending_count())
        self.metrics.active.set(self.core.firing_count())
        self.metrics.open_dispatches.set(len(self.core.open_dispatch_ids()))
        self.metrics.unknown_devices.set(self.core.unknown_devices_seen())
        # Counted here, under the lock: the rules' dicts change on paho's thread.
        self._history_points = self.core.engine.history_points()
        self.metrics.history_points.set(self._history_points)

    # -- effects ---------------------------------------------------------------------------
    def _execute(self, effects: list[Effect]) -> None:
        publish = self._publish
        for effect in effects:
            match effect:
                case Notify():
                    self._notify(effect)
                case Accepted(watermark_ms=watermark_ms):
                    self.metrics.messages.labels("accepted").inc()
                    self.metrics.watermark.set(watermark_ms / 1000)
                case Rejected(topic=topic, rejection=rejection):
                    self.metrics.messages.labels("rejected").inc()
                    self.metrics.rejected.labels(rejection.code).inc()
                    log.debug("message rejected", extra={"topic": topic, "reason": str(rejection)})
                case Publish(topic=topic, payload=payload):
                    publish(topic, payload)
                case Retain(topic=topic, payload=payload):
                    publish(topic, payload, retain=True)
                case ClearRetained(topic=topic):
                    publish(topic, b"", retain=True)
                case WritePoints(points=points):
                    if self.notifiers.influx is not None:
                        self.notifiers.influx.write_points(list(points))
                case DispatchPlanned(request=request):
                    if self.notifiers.dispatch_hook is not None:
                        self.notifiers.dispatch_hook.send(request.model_dump(mode="json"))
                    self.metrics.dispatches.labels("planned").inc()
                    log.info(
                        "dispatch planned",
                        extra={
                            "dispatch_id": request.dispatch_id,
                            "truck_id": request.truck_id,
                            "zone": request.zone,
                            "stops": [s.device_id for s in request.stops],
                            "est_load_kg": request.est_load_kg,
                            "route_km": request.route_km,
                        },
                    )
                case DispatchClosed(dispatch_id=dispatch_id):
                    self.metrics.dispatches.labels("closed").inc()
                    log.info("dispatch closed", extra={"dispatch_id": dispatch_id})
                case AlertRefused(rule=rule, count=count):
                    self.metrics.refused_alerts.labels(rule).inc(count)
                case Held():
                    pass  # acknowledged only once judged (``_judge``)
                case StateRestored():
                    self.synced.set()
                    log.info(
                        "state restored",
                        extra={
                            "firing": effect.firing,
                            "open_dispatches": effect.open_dispatches,
                            "held_messages": effect.held_messages,
                        },
                    )
                case Log(level=level, message=message, extra=extra, code=code):
                    if code is not None:
                        self.metrics.rejected.labels(code).inc()
                    log.log(level, message, extra=dict(extra))

    def _notify(self, effect: Notify) -> None:
        transition = effect.transition
        event = transition.event
        for notifier in self._alert_notifiers:
            try:
                notifier.notify(transition)
            except Exception:
                log.exception("notifier failed", extra={"notifier": notifier.name})
        if effect.arrived is not None and transition.notifies_people:
            self.metrics.latency.observe(time.monotonic() - effect.arrived)
        self.metrics.transitions.labels(event.rule, event.state).inc()
        log.info(
            f"alert {event.state}",
            extra={
                "rule": event.rule,
                "severity": event.severity,
                "site": event.site,
                "device_id": event.device_id,
                "value": event.value,
                "alert_message": event.message,
                "repeat": transition.repeat,
            },
        )
