"""Wires facility-ingest together: settings -> sink, spool, pipeline, MQTT, /healthz, signals."""

from __future__ import annotations

import logging
import struct
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from common.devices import Registry, RegistryError, load_registry
from common.lifecycle import stop_on_signals
from common.mqtt import MqttLink
from common.observability import ServiceHttpServer
from common.payloads import INTERNAL_ERROR, REASON_CODES
from common.topics import Topics
from services.ingest.metrics import IngestMetrics
from services.ingest.pipeline import UNENCODABLE, Pipeline
from services.ingest.retry import RetryPolicy
from services.ingest.settings import IngestSettings
from services.ingest.sinks import Sink, build_sink
from services.ingest.spool import Spool
from services.ingest.stats import StatsReporter
from services.ingest.writer import SINK_REJECTED, Writer

log = logging.getLogger(__name__)

CLIENT_ID = "facility-ingest"
_PUBACK = struct.Struct("!BBH")  # fixed header 0x40, remaining length 2, packet id


class StartupError(Exception):
    """Configuration that only shows its problem when used (e.g. an invalid registry file)."""


def subscriptions(settings: IngestSettings, topics: Topics) -> list[str]:
    filters = [topics.all_telemetry(), topics.all_status()]
    if settings.ingest_shared_group:
        return [f"$share/{settings.ingest_shared_group}/{f}" for f in filters]
    return filters


def _load_registry(settings: IngestSettings) -> Registry | None:
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


class IngestService:
    """One running ingest: build with settings, ``start()``, then ``shutdown()``."""

    def __init__(self, settings: IngestSettings, sink: Sink | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.mqtt_topic_prefix)
        self.registry = _load_registry(settings)
        self.metrics = IngestMetrics()
        self.sink = sink or build_sink(settings)
        self.spool = Spool(
            settings.ingest_spool_dir,
            settings.ingest_spool_max_bytes,
            settings.ingest_spool_segment_bytes,
        )
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
        self.writer = Writer(self.sink, self.spool, policy, self.metrics, self._on_bad_line)
        reporter = None
        if settings.ingest_stats_interval_s > 0:
            reporter = StatsReporter(
                self.link.client_id,
                settings.ingest_stats_interval_s,
                self.metrics,
                self.writer.write_durations_s,
                reasons=REASON_CODES | {INTERNAL_ERROR, SINK_REJECTED, UNENCODABLE},
            )
        self.pipeline = Pipeline(
            self.topics,
            self.registry,
            self.writer,
            self.metrics,
            publish=self._publish,
            ack=self._ack,
            batch_size=settings.ingest_batch_size,
            flush_interval_s=settings.ingest_flush_interval_ms / 1000,
            inbox_size=settings.receive_maximum + 1000,
            reporter=reporter,
        )
        client = self.link.client
        client.on_message = self.pipeline.on_message
        self.link.add_on_connect(self._on_connect)
        self._chain_on_disconnect(client)
        self.http = ServiceHttpServer(
            settings.ingest_http_host, settings.ingest_http_port, self.metrics.registry, self.health
        )

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

    def _chain_on_disconnect(self, client: mqtt.Client) -> None:
        inner = client.on_disconnect

        def on_disconnect(*args: Any) -> None:
            self.pipeline.new_connection()
            self.metrics.mqtt_up.set(0)
            if inner is not None:
                inner(*args)

        client.on_disconnect = on_disconnect

    def _publish(self, topic: str, payload: bytes) -> None:
        self.link.client.publish(topic, payload, qos=1)

    def _ack(self, mids: list[int]) -> None:
        """PUBACK a stored batch's QoS 1 messages with one queued write.

        ``client.ack`` per message queues one packet and wakes paho's loop through its socket
        pair each time (two system calls and a GIL hand-over per message). A run of PUBACKs
        is just their bytes back to back, so the batch goes out as one packet through the
        queue ``client.ack`` itself uses (short form, which MQTT 5 allows for reason 0).
        """
        client = self.link.client
        queue_packet = getattr(client, "_packet_queue", None)
        if queue_packet is None:  # a paho without it: the public, per-message way
            for mid in mids:
                client.ack(mid, 1)
            return
        packet = b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids])
        queue_packet(mqtt.PUBACK, packet, mids[-1], 1)

    def _on_bad_line(self, origin: tuple[str, bytes] | None, line: bytes, reason: str) -> None:
        self.pipeline.on_bad_line(origin, line, reason)

    # -- health ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        sink = self.writer.status
        mqtt_ok = self.link.connected.is_set()
        spool_bytes = self.spool.size_bytes
        healthy = mqtt_ok and sink.state in ("ok", "unknown") and not sink.spool_full
        return {
            "healthy": healthy,
            "mqtt": {"connected": mqtt_ok, "error": self.link.last_error},
            "sink": {
                "kind": self.sink.name,
                "state": sink.state,
                "reachable": sink.state in ("ok", "refused"),
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
        self.http.start()
        self.pipeline.start()
        self.link.start()
        log.info(
            "ingest started",
            extra={
                "mqtt": f"{self.settings.mqtt_host}:{self.settings.mqtt_port}",
                "sink": self.sink.name,
                "http_port": self.http.port,
                "spooled_batches": self.spool.records,
            },
        )

    def shutdown(self) -> bool:
        """Stop taking messages, store or spool in-flight ones, acknowledge, disconnect."""
        started = time.monotonic()
        done = self.pipeline.stop(self.settings.ingest_shutdown_timeout_s)
        if not done:
            log.warning("shutdown timed out; unacknowledged messages will be redelivered")
        self.link.stop()  # DISCONNECT queues behind the acknowledgements just sent
        self.http.stop()
        self.spool.close()
        self.sink.close()
        log.info(
            "ingest stopped",
            extra={"clean": done, "seconds": round(time.monotonic() - started, 2)},
        )
        return done


def run(settings: IngestSettings) -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop."""
    stop = stop_on_signals(log)
    service = IngestService(settings)
    service.start()
    while not stop.wait(1.0):
        if service.pipeline.finished.is_set():
            log.error("pipeline stopped unexpectedly")
            service.shutdown()
            return 1
    service.shutdown()
    return 0
