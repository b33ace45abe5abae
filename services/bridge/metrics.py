"""Prometheus metrics of facility-bridge, in their own registry (served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "bridge_messages_received", "source messages taken in", ["source"], registry=r
        )
        self.readings = Counter(
            "bridge_readings_published",
            "contract readings acknowledged by our broker",
            ["source"],
            registry=r,
        )
        self.skipped = Counter(
            "bridge_messages_skipped",
            "source messages that carry no reading (join, ack, status, down/*), by reason",
            ["source", "reason"],
            registry=r,
        )
        self.rejected = Counter(
            "bridge_messages_rejected",
            "source messages dead-lettered, by reason code",
            ["source", "reason"],
            registry=r,
        )
        self.field_problems = Counter(
            "bridge_field_problems",
            "fields left out of a reading (text for a number, a value not in its map)",
            ["source"],
            registry=r,
        )
        self.acked = Counter(
            "bridge_messages_acked",
            "source messages acknowledged to their broker",
            ["source"],
            registry=r,
        )
        self.refused = Counter(
            "bridge_readings_refused",
            "readings our broker answered with an error reason code (ACL, quota): their source "
            "messages are held unacknowledged",
            registry=r,
        )
        self.inflight = Gauge(
            "bridge_readings_inflight",
            "readings and dead letters published, not yet acknowledged by our broker",
            registry=r,
        )
        self.source_up = Gauge(
            "bridge_source_connected",
            "1 when connected to the source's broker",
            ["source"],
            registry=r,
        )
        self.mqtt_up = Gauge("bridge_mqtt_connected", "1 when connected to our broker", registry=r)
