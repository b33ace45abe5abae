"""The running service: MQTT in, engine + dispatch desk on one worker thread, notifiers out.

State survives restarts through retained messages: active alerts (``P/alerts/active/...``)
and open dispatches (``P/alerts/_dispatch/{id}``) are read back before any telemetry is judged.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import replace
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from common.devices import Registry
from common.messages import AlertEvent, DispatchRequest, DispatchStatus, ms_to_iso
from common.mqtt import MqttLink
from common.payloads import Reading, Rejection, StatusReading, parse_message
from common.topics import TopicError, Topics
from services.alerts.alert_lifecycle import Transition
from services.alerts.config import RulesFile
from services.alerts.dispatch.desk import DeskOutput, DispatchDesk
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.apprise import AppriseNotifier
from services.alerts.notifiers.base import Notifier
from services.alerts.notifiers.influx import InfluxNotifier, InfluxWriter
from services.alerts.notifiers.mqtt import MqttNotifier
from services.alerts.notifiers.outbox import Outbox, OutboxError
from services.alerts.notifiers.webhook import JsonPoster, WebhookNotifier
from services.alerts.rule_engine import RuleEngine
from services.alerts.settings import AlertsSettings

log = logging.getLogger("services.alerts")

CLIENT_ID = "facility-alerts"
Inbound = tuple[str, bytes, float]  # topic, payload, arrival (monotonic)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


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
        self.engine = RuleEngine(
            rules, registry, allowed_lateness_ms=int(settings.alerts_allowed_lateness_s * 1000)
        )
        self.desk = DispatchDesk(
            registry, settings.alerts_opportunistic_pct, settings.alerts_dispatch_timeout_s * 1000
        )
        self.link = MqttLink(
            settings, CLIENT_ID, persistent=True, max_inflight=1000, tcp_nodelay=True
        )
        self.link.client.on_message = self._on_message
        self.link.client.on_subscribe = self._on_subscribe
        self.link.add_on_connect(self._subscribe)
        prefix = self.topics.prefix
        self.sync_topic = f"{prefix}/alerts/_sync"
        self.dispatch_record_prefix = f"{prefix}/alerts/_dispatch/"
        self.active_prefix = f"{prefix}/alerts/active/"
        self.nonce = secrets.token_hex(8)
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self._held: list[Inbound] = []
        self._sub_mid: int | None = None
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="alerts-ticker", daemon=True)
        self.live = False
        self.started_at = 0.0
        self.last_error: str | None = None

        self.mqtt_notifier = MqttNotifier(self.link.client, self.topics)
        self.notifiers: list[Notifier] = [self.mqtt_notifier]
        queue_args: dict[str, Any] = {
            "base_s": settings.alerts_retry_base_s,
            "max_s": settings.alerts_retry_max_s,
            "max_items": settings.alerts_queue_max,
        }
        self.influx: InfluxNotifier | None = None
        if settings.alerts_influx_enabled:
            self.influx = InfluxNotifier(InfluxWriter(settings), self.metrics, **queue_args)
            self.notifiers.append(self.influx)
        secret = (
            settings.alerts_webhook_secret.get_secret_value().encode()
            if settings.alerts_webhook_secret
            else None
        )
        if settings.alerts_webhook_url:
            poster = JsonPoster(settings.alerts_webhook_url, secret)
            self.notifiers.append(
                WebhookNotifier(
                    "webhook", poster, self.metrics, self._outbox("webhook"), **queue_args
                )
            )
        self.dispatch_hook: WebhookNotifier | None = None
        if settings.alerts_dispatch_webhook_url:
            poster = JsonPoster(settings.alerts_dispatch_webhook_url, secret)
            self.dispatch_hook = WebhookNotifier(
                "dispatch_webhook",
                poster,
                self.metrics,
                self._outbox("dispatch_webhook"),
                **queue_args,
            )
        if settings.apprise_urls:
            self.notifiers.append(
                AppriseNotifier(
                    settings.apprise_urls,
                    settings.alerts_apprise_group_s,
                    self.metrics,
                    self._outbox("apprise"),
                    **queue_args,
                )
            )

    def _outbox(self, notifier: str) -> Outbox:
        try:
            return Outbox(self.settings.alerts_state_dir / f"{notifier}.outbox")
        except OutboxError as exc:
            raise ValueError(f"ALERTS_STATE_DIR: {exc}") from exc

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
        for notifier in self.notifiers[1:]:
            notifier.close(timeout)
        if self.dispatch_hook is not None:
            self.dispatch_hook.close(timeout)
        self.link.stop()  # not under the lock: paho's thread may be waiting for it

    def health(self) -> dict[str, Any]:
        connected = self.link.connected.is_set()
        return {
            "healthy": connected and self._worker.is_alive(),
            "mqtt_connected": connected,
            "mqtt_error": self.link.last_error,
            "state_restored": self.synced.is_set(),
            "live": self.live,
            "watermark": ms_to_iso(self.engine.watermark_ms) if self.engine.watermark_ms else None,
            "firing": len(self.engine.lifecycle.firing()),
            "open_dispatches": len(self.desk.open),
        }

    # -- MQTT callbacks (paho's thread): only enqueue --------------------------------------
    def _subscribe(self, client: mqtt.Client, _session_present: bool) -> None:
        t = self.topics
        filters = [
            t.all_active_alerts(),
            f"{self.dispatch_record_prefix}+",
            t.all_dispatch_status(),
            self.sync_topic,
            t.all_telemetry(),
            t.all_status(),
        ]
        _, mid = client.subscribe([(f, 1) for f in filters])
        self._sub_mid = mid

    def _on_subscribe(self, client: mqtt.Client, _ud: object, mid: int, *_: object) -> None:
        # Retained messages of these subscriptions are queued to us before this marker, so
        # when it comes back every retained alert and dispatch is in.
        if mid == self._sub_mid and not self.synced.is_set():
            client.publish(self.sync_topic, self.nonce.encode(), qos=1)

    def _on_message(self, _client: mqtt.Client, _ud: object, msg: mqtt.MQTTMessage) -> None:
        # Judged right here on paho's thread: ~30 us a message, and no hand-over to another
        # thread (which under the GIL costs more than the judging at 5,000 msg/s).
        item = (msg.topic, bytes(msg.payload), time.monotonic())
        with self._lock:
            try:
                self._process(item)
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
                        self._synced()
                    self._tick()
                except Exception:
                    log.exception("tick failed")

    def now_ms(self) -> int:
        if self.live:
            return max(self.engine.watermark_ms, wall_ms())
        return self.engine.watermark_ms

    def _tick(self) -> None:
        if not self.synced.is_set():
            return
        if self.live:
            self._emit(self.engine.tick(wall_ms()), None)
        if self.engine.watermark_ms:
            self._apply(self.desk.tick(self.now_ms()))
        self.metrics.pending.set(
            sum(1 for a in self.engine.lifecycle.alerts.values() if a.state == "pending")
        )
        self.metrics.active.set(len(self.engine.lifecycle.firing()))
        self.metrics.open_dispatches.set(len(self.desk.open))

    def _synced(self) -> None:
        self.synced.set()
        held, self._held = self._held, []
        log.info(
            "state restored",
            extra={
                "firing": len(self.engine.lifecycle.firing()),
                "open_dispatches": len(self.desk.open),
                "held_messages": len(held),
            },
        )
        for item in held:
            self._process(item)

    def _process(self, item: Inbound) -> None:
        topic, payload, arrived = item
        if topic == self.sync_topic:
            if payload == self.nonce.encode() and not self.synced.is_set():
                self._synced()
            return
        if topic.startswith(self.active_prefix):
            if not self.synced.is_set() and payload:
                self._restore_alert(topic, payload)
            return
        if topic.startswith(self.dispatch_record_prefix):
            if not self.synced.is_set() and payload:
                self._restore_dispatch(payload)
            return
        if not self.synced.is_set():
            self._held.append(item)  # judged once the retained state is in
            return
        if topic.startswith(f"{self.topics.prefix}/dispatch/"):
            self._dispatch_status(payload)
            return
        message = parse_message(topic, payload, self.topics)
        if isinstance(message, Rejection):
            self.metrics.messages.labels("rejected").inc()
            self.metrics.rejected.labels(message.code).inc()
            log.debug("message rejected", extra={"topic": topic, "reason": str(message)})
            return
        self.metrics.messages.labels("accepted").inc()
        if isinstance(message, StatusReading):
            if not self.live and self.engine.watermark_ms:
                # A replayed stream: the status belongs to the stream's time, not the clock's.
                message = replace(message, ts_ms=self.engine.watermark_ms)
        else:
            self.live = wall_ms() - message.ts_ms <= self.settings.alerts_live_lag_s * 1000
        self._emit(self.engine.handle(message), arrived)
        self.metrics.watermark.set(self.engine.watermark_ms / 1000)
        if isinstance(message, Reading) and message.kind == "ewaste_bin":
            self._apply(self.desk.observe(message))
        if self.desk.wanted - self.desk.busy_bins():
            self._apply(self.desk.plan(self.now_ms()))

    # -- outputs ---------------------------------------------------------------------------
    def _emit(self, transitions: list[Transition], arrived: float | None) -> None:
        for transition in transitions:
            event = transition.event
            for notifier in self.notifiers:
                try:
                    notifier.notify(transition)
                except Exception:
                    log.exception("notifier failed", extra={"notifier": notifier.name})
            if arrived is not None and transition.notifies_people:
                self.metrics.latency.observe(time.monotonic() - arrived)
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
            if transition.spec.dispatch and event.kind == "ewaste_bin":
                self._update_wanted(event.device_id)

    def _update_wanted(self, device_id: str) -> None:
        wanted = any(
            a.spec.dispatch and a.device_id == device_id and a.state == "firing"
            for a in self.engine.lifecycle.alerts.values()
        )
        if wanted:
            self.desk.want(device_id)
        else:
            self.desk.unwant(device_id)

    def _apply(self, out: DeskOutput) -> None:
        client = self.link.client
        for request in out.requests:
            body = request.model_dump_json().encode()
            client.publish(self.topics.dispatch_requests(), body, qos=1)
            client.publish(self.dispatch_record_prefix + request.dispatch_id, body, 1, True)
            planned = DispatchStatus(
                dispatch_id=request.dispatch_id,
                state="planned",
                truck_id=request.truck_id,
                zone=request.zone,
                ts=request.created_at,
                message=request.reason,
            )
            client.publish(
                self.topics.dispatch_status(request.dispatch_id),
                planned.model_dump_json().encode(),
                qos=1,
                retain=True,
            )
            if self.dispatch_hook is not None:
                self.dispatch_hook.send(request.model_dump(mode="json"))
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
        for status in out.statuses:
            client.publish(
                self.topics.dispatch_status(status.dispatch_id),
                status.model_dump_json().encode(),
                qos=1,
                retain=True,
            )
        if self.influx is not None:
            self.influx.write_points(out.points)
        now = self.now_ms()
        for device_id, dispatch_id in out.collected_bins:
            device = self.desk.registry.device(device_id)
            self.engine.collected(
                device.site if device else "",
                device_id,
                self.desk.collected_ms.get(device_id, now),
            )
            for key, alert in list(self.engine.lifecycle.alerts.items()):
                if alert.spec.dispatch and alert.device_id == device_id:
                    done = self.engine.resolve(key, now, f"collected by dispatch {dispatch_id}")
                    if done is not None:
                        self._emit([done], None)
            self.desk.unwant(device_id)
        for dispatch_id in out.closed:
            client.publish(self.dispatch_record_prefix + dispatch_id, b"", qos=1, retain=True)
            self.metrics.dispatches.labels("closed").inc()
            log.info("dispatch closed", extra={"dispatch_id": dispatch_id})

    # -- inputs besides telemetry ----------------------------------------------------------
    def _restore_alert(self, topic: str, payload: bytes) -> None:
        try:
            rule, _site, _device = self.topics.parse_active_alert(topic)
            event = AlertEvent.model_validate_json(payload)
        except (TopicError, ValidationError) as exc:
            log.warning(
                "ignoring unreadable retained alert", extra={"topic": topic, "error": str(exc)}
            )
            return
        spec = self.engine.specs.get(rule)
        if spec is None or event.state != "firing":
            # The rule was removed from the rules file: nobody will ever resolve it.
            self.link.client.publish(topic, b"", qos=1, retain=True)
            log.info("cleared retained alert of a removed rule", extra={"topic": topic})
            return
        self.engine.lifecycle.restore(spec, event)
        if spec.dispatch and event.kind == "ewaste_bin":
            self.desk.want(event.device_id)

    def _restore_dispatch(self, payload: bytes) -> None:
        try:
            self.desk.restore(DispatchRequest.model_validate_json(payload))
        except (ValidationError, ValueError) as exc:
            log.warning("ignoring unreadable dispatch record", extra={"error": str(exc)})

    def _dispatch_status(self, payload: bytes) -> None:
        if not payload:
            return
        try:
            status = DispatchStatus.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("ignoring unreadable dispatch status", extra={"error": str(exc)})
            return
        self._apply(self.desk.on_status(status, self.now_ms() or wall_ms()))
