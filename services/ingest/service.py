"""Wires facility-ingest together: settings -> sink, spool, pipeline, MQTT, health."""

from __future__ import annotations

import logging
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from common.devices import Registry, RegistryError, load_registry
from common.identity import DeviceGate
from common.mqtt import MqttLink
from common.payloads import IDENTITY_CODES, INTERNAL_ERROR, REASON_CODES
from common.runtime import StartupError
from common.topics import Topics
from services.ingest.batcher import Origin
from services.ingest.deadletter_store import DeadLetterStore
from services.ingest.judge import UNENCODABLE
from services.ingest.metrics import IngestMetrics
from services.ingest.pipeline import Pipeline
from services.ingest.retry import CircuitBreaker, RetryPolicy
from services.ingest.settings import IngestSettings
from services.ingest.sinks import Sink, build_sink
from services.ingest.spool import Spool, free_bytes
from services.ingest.stats import StatsReporter
from services.ingest.status_book import FILE_NAME as STATUS_BOOK
from services.ingest.status_book import StatusBook
from services.ingest.writer import SINK_REJECTED, SinkHealth, Writer

log = logging.getLogger(__name__)

CLIENT_ID = "facility-ingest"
_DISCONNECT_SHARE = 0.25
"""Of the shutdown timeout, the part kept for disconnecting after the pipeline's flush."""


def subscriptions(settings: IngestSettings, topics: Topics) -> list[str]:
    filters = [topics.all_telemetry(), topics.all_status()]
    if settings.ingest_shared_group:
        return [f"$share/{settings.ingest_shared_group}/{f}" for f in filters]
    return filters


def load_registry_for(settings: IngestSettings) -> Registry | None:
    if not settings.devices_file.exists():
        log.warning(
            "no device registry; bins get no zone tags",
            extra={"devices_file": str(settings.devices_file)},
        )
        return None
    try:
        return load_registry(settings.devices_file)
    except RegistryError as exc:
        raise StartupError(f"DEVICES_FILE: {exc}") from exc


def device_gate(settings: IngestSettings, registry: Registry | None) -> DeviceGate:
    if settings.unknown_devices == "reject" and registry is None:
        raise StartupError(
            f"UNKNOWN_DEVICES=reject needs the device registry, and DEVICES_FILE "
            f"({settings.devices_file}) does not exist"
        )
    return DeviceGate(registry, settings.unknown_devices, settings.unknown_devices_max)


def _warn_if_disk_smaller_than_spool(spool: Spool) -> None:
    free = free_bytes(spool.directory)
    if free + spool.size_bytes < spool.max_bytes:
        log.warning(
            "spool: less free disk space than INGEST_SPOOL_MAX_BYTES; a long outage may fill "
            "the disk before the spool cap (then acknowledgements are held: disk full)",
            extra={
                "spool_dir": str(spool.directory),
                "free_bytes": free,
                "spool_bytes": spool.size_bytes,
                "max_bytes": spool.max_bytes,
            },
        )


class IngestService:
    """One running ingest: build with settings, ``start()``, then ``stop(timeout_s)``.

    Raises :class:`StartupError` for an invalid device registry."""

    def __init__(self, settings: IngestSettings, sink: Sink | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.mqtt_topic_prefix)
        self.registry = load_registry_for(settings)
        self.gate = device_gate(settings, self.registry)
        self.metrics = IngestMetrics()
        self.metrics.unknown_devices_max.set(settings.unknown_devices_max)
        self.sink = sink or build_sink(settings)
        self.spool = Spool(
            settings.ingest_spool_dir,
            settings.ingest_spool_max_bytes,
            settings.ingest_spool_segment_bytes,
        )
        _warn_if_disk_smaller_than_spool(self.spool)
        self.metrics.spool_quarantined.set_function(lambda: self.spool.quarantined)
        self.metrics.spool_damaged_bytes.set_function(lambda: self.spool.damaged_bytes)
        self.metrics.spool_disk_full.set_function(lambda: int(self.spool.disk_full is not None))
        self.letters = DeadLetterStore(
            settings.deadletter_dir,
            settings.ingest_deadletter_max_bytes,
            settings.ingest_deadletter_segment_bytes,
        )
        self.metrics.deadletter_store_bytes.set_function(self.letters.size_bytes)
        self.metrics.deadletters_dropped.set_function(lambda: self.letters.dropped)
        self.metrics.deadletter_store_error.set_function(
            lambda: int(self.letters.error is not None)
        )
        self.statuses = StatusBook(settings.ingest_spool_dir / STATUS_BOOK)
        self.link = MqttLink(
            settings,
            CLIENT_ID,
            persistent=True,
            receive_maximum=settings.receive_maximum,
            manual_ack=True,
        )
        policy = RetryPolicy(
            base_s=settings.ingest_retry_base_ms / 1000,
            max_s=settings.ingest_retry_max_ms / 1000,
            attempts=settings.ingest_write_attempts,
        )
        breaker = CircuitBreaker(
            failures_to_open=settings.ingest_write_attempts,
            slow_s=settings.ingest_probe_timeout_ms / 1000,
        )
        self.writer = Writer(
            self.sink,
            self.spool,
            policy,
            self.metrics,
            self._on_bad_line,
            breaker=breaker,
            bisect_max_writes=settings.ingest_bisect_max_writes,
        )
        reporter = None
        if settings.ingest_stats_interval_s > 0:
            reporter = StatsReporter(
                self.link.client_id,
                settings.ingest_stats_interval_s,
                self.metrics,
                self.writer.write_durations_s,
                reasons=REASON_CODES
                | IDENTITY_CODES
                | {INTERNAL_ERROR, SINK_REJECTED, UNENCODABLE},
            )
        self.pipeline = Pipeline(
            self.topics,
            self.registry,
            self.writer,
            self.metrics,
            publish=self._publish,
            ack=self.link.ack_many,
            batch_size=settings.ingest_batch_size,
            flush_interval_s=settings.ingest_flush_interval_ms / 1000,
            inbox_size=settings.receive_maximum + 1000,
            reporter=reporter,
            gate=self.gate,
            letters=self.letters,
            statuses=self.statuses,
            max_future_ms=settings.max_future_ms,
        )
        self.link.set_message_handler(self.pipeline.on_message)
        self.link.add_on_connect(self._on_connect)
        self.link.add_on_disconnect(self._on_disconnect)

    # -- MQTT ------------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, session_present: bool) -> None:
        self.pipeline.new_connection()
        self.metrics.mqtt_up.set(1)
        # Subscribing again with a present session is harmless; with retain handling 1 the
        # broker does not resend every retained status each time we reconnect.
        if self.link.v5:
            options = SubscribeOptions(qos=1, retainHandling=1)
            client.subscribe([(f, options) for f in subscriptions(self.settings, self.topics)])
        else:
            client.subscribe([(f, 1) for f in subscriptions(self.settings, self.topics)])
        log.info(
            "subscribed",
            extra={
                "filters": subscriptions(self.settings, self.topics),
                "session_present": session_present,
                "receive_maximum": self.settings.receive_maximum,
            },
        )

    def _on_disconnect(self) -> None:
        self.pipeline.new_connection()
        self.metrics.mqtt_up.set(0)

    def _publish(self, topic: str, payload: bytes) -> None:
        self.link.client.publish(topic, payload, qos=1)

    def _on_bad_line(self, origin: Origin | None, line: bytes, reason: str, replayed: bool) -> None:
        self.pipeline.on_bad_line(origin, line, reason, replayed)

    # -- health ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        sink = self.writer.status
        mqtt_ok = self.link.connected.is_set()
        spool_bytes = self.spool.size_bytes
        healthy = (
            mqtt_ok
            and sink.state in (SinkHealth.OK, SinkHealth.UNKNOWN)
            and not sink.spool_full
            and self.spool.disk_full is None
            and self.letters.error is None
        )
        return {
            "healthy": healthy,
            "mqtt": {"connected": mqtt_ok, "error": self.link.last_error},
            "sink": {
                "kind": self.sink.name,
                "state": sink.state,
                "reachable": sink.state in (SinkHealth.OK, SinkHealth.REFUSED),
                "last_status": sink.last_status,
                "error": sink.last_error,
            },
            "spool": {
                "dir": str(self.spool.directory),
                "batches": self.spool.records,
                "bytes": spool_bytes,
                "max_bytes": self.spool.max_bytes,
                "used_pct": round(100 * spool_bytes / self.spool.max_bytes, 2),
                "full": sink.spool_full,
                "error": self.spool.disk_full,
                "quarantined_segments": self.spool.quarantined,
                "quarantine_dir": str(self.spool.quarantine_dir),
                "damaged_bytes": self.spool.damaged_bytes,
            },
            "deadletters": {
                "dir": str(self.letters.directory),
                "bytes": self.letters.size_bytes(),
                "max_bytes": self.letters.max_bytes,
                "dropped": self.letters.dropped,
                "error": self.letters.error,
            },
            "devices": {
                "unknown": self.gate.unknown,
                "unknown_accepted": self.gate.unknown_seen,
                "unknown_max": self.gate.max_unknown,
            },
        }

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.ingest_create_bucket:
            try:
                self.sink.ensure_database(self.settings.retention_s)
            except Exception as exc:
                # Not fatal: the database may come later; writes spool and /healthz tells.
                log.error(
                    "could not create the bucket/database at start",
                    extra={"bucket": self.settings.influx_bucket, "error": str(exc)},
                )
        self.writer.probe()
        self.pipeline.start()
        self.link.start()
        log.info(
            "ingest started",
            extra={
                "mqtt": f"{self.settings.mqtt_host}:{self.settings.mqtt_port}",
                "sink": self.sink.name,
                "spooled_batches": self.spool.records,
            },
        )

    def failure(self) -> str | None:
        """Why the service cannot go on by itself (its pipeline died), else None."""
        return "pipeline stopped unexpectedly" if self.pipeline.finished.is_set() else None

    def stop(self, timeout_s: float) -> bool:
        """Stop taking messages, store or spool in-flight ones, acknowledge, disconnect; all
        within ``timeout_s`` (a write still hanging then is left to die with the process)."""
        started = time.monotonic()
        done = self.pipeline.stop(timeout_s * (1 - _DISCONNECT_SHARE))
        if not done:
            log.warning("shutdown timed out; unacknowledged messages will be redelivered")
        self.link.stop()  # DISCONNECT queues behind the acknowledgements just sent
        if done:
            # Else the store thread may still be inside a write or an append: leave both open.
            self.spool.close()
            self.sink.close()
        log.info(
            "ingest stopped",
            extra={"clean": done, "seconds": round(time.monotonic() - started, 2)},
        )
        return done
