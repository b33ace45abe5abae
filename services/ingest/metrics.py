"""Prometheus metrics of the ingest pipeline, in their own registry (served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Lag buckets are dense below 2 s: the target is p99 <= 1 s from publish to stored.
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5, 10, 30, 60, 300)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000)


class IngestMetrics:
    """Every counter the issue asks for; the pipeline increments them once per batch."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "ingest_messages_received", "MQTT messages taken in", ["channel"], registry=r
        )
        self.stored = Counter("ingest_points_stored", "points accepted by the database", registry=r)
        self.rejected = Counter(
            "ingest_messages_rejected",
            "messages dead-lettered, by reason code",
            ["reason"],
            registry=r,
        )
        self.spooled = Counter("ingest_points_spooled", "points appended to the spool", registry=r)
        self.replayed = Counter(
            "ingest_points_replayed", "points replayed from the spool", registry=r
        )
        self.self_report_stored = Counter(
            "ingest_self_report_points_stored",
            "ingest's own ingest_stats/ingest_rejections points stored (not in the counters above)",
            registry=r,
        )
        self.retries = Counter("ingest_write_retries", "write attempts retried", registry=r)
        self.acked = Counter("ingest_messages_acked", "MQTT messages acknowledged", registry=r)
        self.batch_points = Histogram(
            "ingest_batch_points", "points per write", buckets=_BATCH_BUCKETS, registry=r
        )
        self.write_seconds = Histogram(
            "ingest_write_duration_seconds",
            "duration of one write to the database",
            ["outcome"],
            registry=r,
        )
        self.lag = Histogram(
            "ingest_end_to_end_lag_seconds",
            "reading timestamp (publish time for live devices) to stored and acknowledged",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.pipeline_lag = Histogram(
            "ingest_pipeline_lag_seconds",
            "oldest message of a batch: received from the broker to acknowledged",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.inbox_messages = Gauge(
            "ingest_inbox_messages",
            "messages handed over by the MQTT thread, not yet taken by the encode thread "
            "(bounded at Receive Maximum + 1000)",
            registry=r,
        )
        self.spool_bytes = Gauge("ingest_spool_bytes", "bytes in the spool", registry=r)
        self.spool_batches = Gauge("ingest_spool_batches", "batches in the spool", registry=r)
        self.spool_max_bytes = Gauge(
            "ingest_spool_max_bytes", "spool size cap (INGEST_SPOOL_MAX_BYTES)", registry=r
        )
        self.spool_quarantined = Gauge(
            "ingest_spool_quarantined_segments",
            "damaged spool segments kept under <spool>/quarantine/ (their bad frames skipped)",
            registry=r,
        )
        self.spool_damaged_bytes = Gauge(
            "ingest_spool_damaged_bytes",
            "bytes of damaged spool frames skipped since start (batches lost)",
            registry=r,
        )
        self.spool_disk_full = Gauge(
            "ingest_spool_disk_full",
            "1 while the spool's file system refuses appends (acknowledgements held)",
            registry=r,
        )
        self.sink_up = Gauge(
            "ingest_sink_up", "1 when the last write to the database succeeded", registry=r
        )
        self.unknown_devices = Gauge(
            "ingest_unknown_devices",
            "distinct unregistered (site, kind, device_id) accepted (UNKNOWN_DEVICES=accept)",
            registry=r,
        )
        self.unknown_devices_max = Gauge(
            "ingest_unknown_devices_max",
            "cap on them (UNKNOWN_DEVICES_MAX); beyond it: unknown_device_limit",
            registry=r,
        )
        self.mqtt_up = Gauge("ingest_mqtt_connected", "1 when connected to the broker", registry=r)
        self.deadletter_store_bytes = Gauge(
            "ingest_deadletter_store_bytes",
            "bytes of dead letters kept under INGEST_DEADLETTER_DIR (for list / redrive)",
            registry=r,
        )
        self.deadletters_dropped = Gauge(
            "ingest_deadletters_dropped",
            "dead letters deleted since start, oldest first, to stay within "
            "INGEST_DEADLETTER_MAX_BYTES",
            registry=r,
        )
        self.deadletter_store_error = Gauge(
            "ingest_deadletter_store_error",
            "1 while the dead-letter store's disk refuses writes (acknowledgements held)",
            registry=r,
        )
