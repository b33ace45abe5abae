"""The alerts service's Prometheus metrics, in one registry per service instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AlertsMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "alerts_messages", "MQTT messages judged, by outcome", ["outcome"], registry=r
        )
        self.rejected = Counter(
            "alerts_rejected_messages",
            "Messages refused by validation, by reason",
            ["code"],
            registry=r,
        )
        self.transitions = Counter(
            "alerts_transitions", "Alert state changes published", ["rule", "state"], registry=r
        )
        self.active = Gauge("alerts_firing", "Alerts firing now", registry=r)
        self.refused_alerts = Counter(
            "alerts_refused_alerts",
            "Alerts not opened because ALERTS_MAX_OPEN_ALERTS were open, by rule",
            ["rule"],
            registry=r,
        )
        self.publish_refused = Counter(
            "alerts_publish_refused",
            "Publishes of ours the broker answered with a refusal (MQTT v5 reason >= 0x80)",
            registry=r,
        )
        self.history_points = Gauge(
            "alerts_history_points",
            "Points of history the rules keep, all devices (ALERTS_HISTORY_MAX_POINTS each)",
            registry=r,
        )
        self.pending = Gauge("alerts_pending", "Alerts pending (waiting for 'for')", registry=r)
        self.deliveries = Counter(
            "alerts_deliveries",
            "Notifier delivery attempts, by notifier and outcome "
            "(delivered/failed/dropped/refused)",
            ["notifier", "outcome"],
            registry=r,
        )
        self.queued = Gauge(
            "alerts_delivery_queue", "Deliveries waiting (incl. retries)", ["notifier"], registry=r
        )
        self.unjournaled = Gauge(
            "alerts_delivery_unjournaled",
            "Deliveries queued in memory only: the outbox could not take them (disk full)",
            ["notifier"],
            registry=r,
        )
        self.dispatches = Counter(
            "alerts_dispatches", "Dispatch lifecycle events", ["state"], registry=r
        )
        self.open_dispatches = Gauge(
            "alerts_open_dispatches", "Dispatches not yet closed", registry=r
        )
        self.unknown_devices = Gauge(
            "alerts_unknown_devices",
            "Distinct unregistered (site, kind, device) with state kept (UNKNOWN_DEVICES_MAX)",
            registry=r,
        )
        self.latency = Histogram(
            "alerts_message_to_publish_seconds",
            "From a message's arrival to its alert being published",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.watermark = Gauge(
            "alerts_watermark_seconds", "Latest reading ts seen (event time)", registry=r
        )
