"""ingest's own figures as points: the builder, the snapshot from the metrics, and the writer
keeping those points out of the message counters."""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path

from common.lineproto import encode_point
from services.ingest.metrics import IngestMetrics
from services.ingest.retry import RetryPolicy
from services.ingest.spool import Spool
from services.ingest.stats import (
    Figures,
    StatsReporter,
    bucket_quantile,
    is_self_report,
    percentile,
    stats_points,
)
from services.ingest.writer import Writer
from tests.unit.ingest_fakes import MemorySink


def test_stats_points_carry_every_figure_with_integer_counters_and_float_latencies() -> None:
    figures = Figures(
        received=120,
        stored=100,
        spooled=7,
        replayed=5,
        retries=2,
        spool_bytes=2048,
        spool_batches=1,
        rejected_by_reason={"invalid_json": 3, "out_of_range": 2},
        write_p99_ms=12.5,
        write_max_ms=40,
        lag_p99_s=0.25,
    )
    points = stats_points("ingest-a", figures, 1_700_000_000_000)
    stats, *rejections = points
    assert stats == (
        "ingest_stats",
        {"client_id": "ingest-a"},
        {
            "received": 120,
            "stored": 100,
            "rejected": 5,
            "spooled": 7,
            "replayed": 5,
            "retries": 2,
            "spool_bytes": 2048,
            "spool_batches": 1,
            "write_p99_ms": 12.5,
            "write_max_ms": 40.0,
            "lag_p99_s": 0.25,
        },
        1_700_000_000_000,
    )
    assert isinstance(stats[2]["write_max_ms"], float)  # one field type, whatever was passed
    assert rejections == [
        (
            "ingest_rejections",
            {"client_id": "ingest-a", "reason": "invalid_json"},
            {"count": 3},
            1_700_000_000_000,
        ),
        (
            "ingest_rejections",
            {"client_id": "ingest-a", "reason": "out_of_range"},
            {"count": 2},
            1_700_000_000_000,
        ),
    ]
    line = encode_point(*stats)
    # Floats carry no "i" suffix, so InfluxDB types the field float even for whole numbers.
    assert "received=120i" in line and "write_max_ms=40," in line
    assert is_self_report(encode_point(*rejections[0]).encode())
    assert not is_self_report(b"ewaste_bin,site=ewaste fill_pct=1 1\n")


def test_quiet_interval_leaves_latency_fields_out_instead_of_reporting_zero() -> None:
    figures = Figures(
        received=0, stored=0, spooled=0, replayed=0, retries=0, spool_bytes=0, spool_batches=0
    )
    [(measurement, _, fields, _)] = stats_points("i", figures, 1)
    assert measurement == "ingest_stats"
    assert not {"write_p99_ms", "write_max_ms", "lag_p99_s"} & set(fields)
    assert fields["rejected"] == 0


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.99) is None
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert percentile([float(i) for i in range(1, 201)], 0.5) == 100.0


def test_bucket_quantile_interpolates_like_histogram_quantile() -> None:
    assert bucket_quantile(0.99, []) is None
    assert bucket_quantile(0.99, [(0.1, 0), (float("inf"), 0)]) is None
    # 100 observations, all in (0.1, 0.2]: the 99th is 99 % of the way through that bucket.
    buckets = [(0.1, 0.0), (0.2, 100.0), (float("inf"), 100.0)]
    assert abs((bucket_quantile(0.99, buckets) or 0) - 0.199) < 1e-9
    # Beyond the last finite bound, that bound is the answer.
    assert bucket_quantile(0.99, [(1.0, 0.0), (float("inf"), 10.0)]) == 1.0


def test_reporter_reads_the_prometheus_counters_and_resets_interval_latencies() -> None:
    metrics = IngestMetrics()
    durations: deque[float] = deque()
    reporter = StatsReporter(
        "ingest-b", 10, metrics, durations, reasons=["invalid_json", "bad_topic"]
    )
    metrics.received.labels("telemetry").inc(90)
    metrics.received.labels("status").inc(10)
    metrics.stored.inc(95)
    metrics.rejected.labels("invalid_json").inc(4)
    metrics.rejected.labels("sink_rejected").inc(1)
    metrics.spooled.inc(30)
    metrics.replayed.inc(30)
    metrics.retries.inc(3)
    metrics.spool_bytes.set(4096)
    metrics.spool_batches.set(2)
    for lag in (0.15,) * 99 + (4.0,):
        metrics.lag.observe(lag)
    durations.extend([0.010] * 98 + [0.020, 0.050])

    first = reporter.figures()
    assert (first.received, first.stored, first.spooled, first.replayed, first.retries) == (
        100,
        95,
        30,
        30,
        3,
    )
    assert (first.spool_bytes, first.spool_batches) == (4096, 2)
    # Known reasons are there from the start at 0, so their first rejections show as an increase.
    assert first.rejected_by_reason == {"invalid_json": 4, "sink_rejected": 1, "bad_topic": 0}
    assert first.write_p99_ms == 20.0 and first.write_max_ms == 50.0
    assert first.lag_p99_s is not None and 0.1 < first.lag_p99_s <= 0.2

    second = reporter.figures()  # nothing happened since: counters stay, latencies are gone
    assert second.received == 100 and second.rejected_by_reason == first.rejected_by_reason
    assert second.write_p99_ms is None and second.write_max_ms is None
    assert second.lag_p99_s is None


def test_reporter_is_due_on_a_fixed_cadence_without_bursts_after_falling_behind() -> None:
    reporter = StatsReporter("c", 10, IngestMetrics(), deque())
    start = reporter._next_s - 10
    assert not reporter.due(start + 9.9)
    assert reporter.due(start + 10)
    reporter.points(start + 10.3, 1)
    assert not reporter.due(start + 19.9) and reporter.due(start + 20)
    reporter.points(start + 95, 2)  # a long stall: the next one is a full interval later
    assert not reporter.due(start + 104.9) and reporter.due(start + 105)


def test_writer_keeps_its_own_points_out_of_the_message_counters(tmp_path: Path) -> None:
    metrics = IngestMetrics()
    sink = MemorySink()
    writer = Writer(
        sink,
        Spool(tmp_path / "spool", max_bytes=10**6, segment_bytes=4096),
        RetryPolicy(base_s=0.001, max_s=0.002, attempts=2, rng=random.Random(0)),
        metrics,
        on_bad_line=lambda origin, line, reason, replayed: None,
        replay_budget_s=5.0,
    )
    own = b"ingest_stats,client_id=a received=1i 1\ningest_rejections,client_id=a,reason=x count=1i 1\n"
    assert writer.store(b"m v=1 1\nm v=2 2\n")
    assert writer.store(own)
    assert metrics.stored._value.get() == 2
    assert metrics.self_report_stored._value.get() == 2
    assert len(writer.write_durations_s) == 2

    sink.mode = "down"  # spooled and replayed like any batch, still not counted as messages
    assert not writer.store(own)
    assert not writer.store(b"m v=3 3\n")
    assert metrics.spooled._value.get() == 1
    sink.mode = "up"
    assert writer.replay(force=True)
    assert writer.spool.empty
    assert metrics.replayed._value.get() == 1
    assert metrics.self_report_stored._value.get() == 4
    assert sink.lines[-3:] == [*own.splitlines(keepends=True), b"m v=3 3\n"]
