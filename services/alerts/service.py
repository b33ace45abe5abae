"""The running service: MQTT in, ``AlertsCore`` on paho's thread and a ticker, effects out.

The core decides; this adapter only does I/O: it feeds the core MQTT messages and the wall
clock, and executes the effects the core returns (publishes, notifiers, points, metrics, logs).
State survives restarts through retained messages: active alerts (``P/alerts/active/...``)
and open dispatches (``P/alerts/_dispatch/{id}``) are read back before any telemetry is judged.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from common.devices import Registry
from common.mqtt import Message, MqttLink
from common.timestamps import ms_to_iso
from common.topics import Topics
from services.alerts.config import RulesFile
from services.alerts.core import (
    Accepted,
    AlertsCore,
    ClearRetained,
    CoreSettings,
    DispatchClosed,
    DispatchPlanned,
    Effect,
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
from services.alerts.notifiers.base import Notifier, QueueArgs
from services.alerts.notifiers.influx import InfluxNotifier, InfluxWriter
from services.alerts.notifiers.mqtt import MqttNotifier
from services.alerts.notifiers.outbox import Outbox, OutboxError
from services.alerts.notifiers.webhook import JsonPoster, WebhookNotifier
from services.alerts.settings import AlertsSettings

log = logging.getLogger("services.alerts")

CLIENT_ID = "facility-alerts"


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


def build_notifiers(
    settings: AlertsSettings, client: mqtt.Client, topics: Topics, metrics: AlertsMetrics
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
    mqtt_notifier = MqttNotifier(client, topics)
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
            ),
            nonce=secrets.token_hex(8),
        )
        self.link = MqttLink(
            settings, CLIENT_ID, persistent=True, max_inflight=1000, tcp_nodelay=True
        )
        self._wire(self.link)
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self._sub_mid: int | None = None
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="alerts-ticker", daemon=True)
        self.started_at = 0.0
        self.notifiers = build_notifiers(settings, self.link.client, self.topics, self.metrics)
        self._alert_notifiers = self.notifiers.of_alerts()

    def _wire(self, link: MqttLink) -> None:
        """Every MQTT hook of the service, in one place."""
        link.set_message_handler(self._on_message)
        link.add_on_subscribed(self._on_subscribed)
        link.add_on_connect(self._subscribe)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.monotonic()
        self._worker.start()
        self.link.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the clock, flush the HTTP notifiers, then leave the broker (which sends what
        paho still holds before the DISCONNECT)."""
        self._stop.set()
        self._worker.join(timeout)
        for notifier in self.notifiers.delivering():
            notifier.close(timeout)
        self.link.stop()  # not under the lock: paho's thread may be waiting for it

    def health(self) -> dict[str, Any]:
        connected = self.link.connected.is_set()
        core = self.core
        return {
            "healthy": connected and self._worker.is_alive(),
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
        }

    # -- MQTT callbacks (paho's thread) ----------------------------------------------------
    def _subscribe(self, client: mqtt.Client, _session_present: bool) -> None:
        t = self.topics
        filters = [
            t.all_active_alerts(),
            t.all_dispatch_records(),
            t.all_dispatch_status(),
            t.alerts_sync(),
            t.all_telemetry(),
            t.all_status(),
        ]
        _, mid = client.subscribe([(f, 1) for f in filters])
        self._sub_mid = mid

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
        with self._lock:
            try:
                self._execute(self.core.receive(item, wall_ms()))
            except Exception:
                # A bug with one message must not stop the next one being judged.
                log.exception("failed to process message", extra={"topic": msg.topic})

    # -- time ------------------------------------------------------------------------------
    def _run(self) -> None:
        """The ticker: live absence, keep_firing_for, repeats and dispatch timeouts."""
        while not self._stop.wait(self.settings.alerts_tick_s):
            with self._lock:
                try:
                    waited = time.monotonic() - self.started_at
                    if not self.synced.is_set() and waited > self.settings.alerts_sync_timeout_s:
                        log.warning("retained state not confirmed in time; judging anyway")
                        self._execute(self.core.finish_restoring(wall_ms()))
                    self._tick()
                except Exception:
                    log.exception("tick failed")

    def _tick(self) -> None:
        if not self.synced.is_set():
            return
        self._execute(self.core.tick(wall_ms()))
        self.metrics.pending.set(self.core.pending_count())
        self.metrics.active.set(self.core.firing_count())
        self.metrics.open_dispatches.set(len(self.core.open_dispatch_ids()))
        self.metrics.unknown_devices.set(self.core.unknown_devices_seen())

    # -- effects ---------------------------------------------------------------------------
    def _execute(self, effects: list[Effect]) -> None:
        publish = self.link.client.publish
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
                    publish(topic, payload, qos=1)
                case Retain(topic=topic, payload=payload):
                    publish(topic, payload, qos=1, retain=True)
                case ClearRetained(topic=topic):
                    publish(topic, b"", qos=1, retain=True)
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
