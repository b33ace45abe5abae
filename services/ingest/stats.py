"""ingest's own figures as points (``ingest_stats``, ``ingest_rejections``), so a dashboard
reading only InfluxDB sees what /metrics shows. Read from the Prometheus metrics: no hot-path cost.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics import MetricWrapperBase

from common.schema import Point
from services.ingest.metrics import IngestMetrics

STATS = "ingest_stats"
REJECTIONS = "ingest_rejections"
SELF_REPORT_PREFIXES = (f"{STATS},".encode(), f"{REJECTIONS},".encode())
"""A batch of the service's own points starts with one of these (they never share a batch with
data), so the writer keeps them out of the message counters it reports."""


def is_self_report(body: bytes) -> bool:
    return body.startswith(SELF_REPORT_PREFIXES)


@dataclass(frozen=True, slots=True)
class Figures:
    """One snapshot: cumulative counters since start, gauges now, latencies over the interval
    (None when nothing happened in it: the field is then left out rather than faked as 0)."""

    received: int
    stored: int
    spooled: int
    replayed: int
    retries: int
    spool_bytes: int
    spool_batches: int
    rejected_by_reason: Mapping[str, int] = field(default_factory=dict)
    write_p99_ms: float | None = None
    write_max_ms: float | None = None
    lag_p99_s: float | None = None


def stats_points(client_id: str, figures: Figures, ts_ms: int) -> list[Point]:
    """One ``ingest_stats`` point and one ``ingest_rejections`` point per reason seen so far."""
    fields: dict[str, float | int | bool | str] = {
        "received": figures.received,
        "stored": figures.stored,
        "rejected": sum(figures.rejected_by_reason.values()),
        "spooled": figures.spooled,
        "replayed": figures.replayed,
        "retries": figures.retries,
        "spool_bytes": figures.spool_bytes,
        "spool_batches": figures.spool_batches,
    }
    for name, value in (
        ("write_p99_ms", figures.write_p99_ms),
        ("write_max_ms", figures.write_max_ms),
        ("lag_p99_s", figures.lag_p99_s),
    ):
        if value is not None:
            fields[name] = float(value)
    points: list[Point] = [(STATS, {"client_id": client_id}, fields, ts_ms)]
    for reason, count in sorted(figures.rejected_by_reason.items()):
        tags = {"client_id": client_id, "reason": reason}
        points.append((REJECTIONS, tags, {"count": count}, ts_ms))
    return points


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (an observed value, never interpolated); None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Quantile from cumulative histogram buckets ``(upper bound, count)``, interpolated inside
    the bucket as PromQL's ``histogram_quantile`` does; None when the buckets are empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower  # beyond the last finite bound: its bound is all we know
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def _total(metric: MetricWrapperBase) -> int:
    samples = (s for m in metric.collect() for s in m.samples)
    return int(sum(s.value for s in samples if s.name.endswith("_total")))


def _gauge(metric: MetricWrapperBase) -> int:
    return int(sum(s.value for m in metric.collect() for s in m.samples))


def _totals_by(metric: MetricWrapperBase, label: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and label in sample.labels:
                key = sample.labels[label]
                out[key] = out.get(key, 0) + int(sample.value)
    return out


def _buckets(metric: MetricWrapperBase) -> dict[float, float]:
    return {
        float(s.labels["le"]): s.value
        for m in metric.collect()
        for s in m.samples
        if s.name.endswith("_bucket")
    }


class StatsReporter:
    """Builds a snapshot every ``interval_s``; owned by the store thread (which also owns the
    writer whose ``write_durations_s`` it drains), so it needs no lock of its own."""

    def __init__(
        self,
        client_id: str,
        interval_s: float,
        metrics: IngestMetrics,
        write_durations_s: deque[float],
        reasons: Iterable[str] = (),
    ) -> None:
        self.client_id = client_id
        # Every known reason is reported from the start, at 0: a dashboard taking differences
        # of the cumulative count would otherwise miss a reason's first rejections.
        self.reasons = dict.fromkeys(reasons, 0)
        self.interval_s = interval_s
        self.metrics = metrics
        self.write_durations_s = write_durations_s
        self._next_s = time.monotonic() + interval_s
        self._lag_seen = _buckets(metrics.lag)

    def due(self, now_s: float) -> bool:
        return now_s >= self._next_s

    def figures(self) -> Figures:
        """Read the counters and start a new interval for the latencies."""
        m = self.metrics
        durations = list(self.write_durations_s)
        self.write_durations_s.clear()
        lag_now = _buckets(m.lag)
        lag_delta = sorted((le, n - self._lag_seen.get(le, 0.0)) for le, n in lag_now.items())
        self._lag_seen = lag_now
        p99 = percentile(durations, 0.99)
        return Figures(
            received=_total(m.received),
            stored=_total(m.stored),
            spooled=_total(m.spooled),
            replayed=_total(m.replayed),
            retries=_total(m.retries),
            spool_bytes=_gauge(m.spool_bytes),
            spool_batches=_gauge(m.spool_batches),
            rejected_by_reason=self.reasons | _totals_by(m.rejected, "reason"),
            write_p99_ms=None if p99 is None else round(p99 * 1000, 3),
            write_max_ms=round(max(durations) * 1000, 3) if durations else None,
            lag_p99_s=bucket_quantile(0.99, lag_delta),
        )

    def points(self, now_s: float, ts_ms: int) -> list[Point]:
        # Fixed cadence from the previous slot, not from now: a slow write does not drift it.
        self._next_s += self.interval_s
        if self._next_s <= now_s:  # fell behind (a long outage write): skip, do not burst
            self._next_s = now_s + self.interval_s
        return stats_points(self.client_id, self.figures(), ts_ms)
