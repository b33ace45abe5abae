"""The store stage: database first, spool on outage, replay in order, never drop."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from services.ingest.metrics import IngestMetrics
from services.ingest.retry import RetryPolicy
from services.ingest.spool import Spool
from services.ingest.writer import Abandoned, Writer
from tests.unit.ingest_fakes import MemorySink

FAST = RetryPolicy(base_s=0.001, max_s=0.002, attempts=3, rng=random.Random(0))


def lines(start: int, count: int) -> bytes:
    return b"".join(f"m v={i} {i}\n".encode() for i in range(start, start + count))


def make(
    tmp_path: Path, max_bytes: int = 10**6
) -> tuple[Writer, MemorySink, list[tuple[object, bytes, str]]]:
    sink = MemorySink()
    bad: list[tuple[object, bytes, str]] = []
    writer = Writer(
        sink,
        Spool(tmp_path / "spool", max_bytes=max_bytes, segment_bytes=4096),
        FAST,
        IngestMetrics(),
        on_bad_line=lambda origin, line, reason: bad.append((origin, line, reason)),
        replay_budget_s=5.0,
    )
    return writer, sink, bad


def replay_all(writer: Writer) -> None:
    for _ in range(1000):
        if writer.spool.empty:
            return
        writer.replay(force=True)
    raise AssertionError("spool did not drain")


def test_transient_errors_are_retried_then_stored(tmp_path: Path) -> None:
    writer, sink, _ = make(tmp_path)
    sink.fail_next = 2
    assert writer.store(lines(0, 10)) is True
    assert sink.writes == 3 and len(sink.lines) == 10
    assert writer.spool.empty and writer.status.state == "ok"


def test_outage_spools_then_replays_everything_in_order(tmp_path: Path) -> None:
    writer, sink, _ = make(tmp_path)
    writer.store(lines(0, 5))
    sink.mode = "down"
    assert writer.store(lines(5, 5)) is False
    assert writer.status.state == "unreachable"
    writer.store(lines(10, 5))  # queued behind the spool, not written ahead of it
    assert writer.spool.records == 2
    sink.mode = "up"
    writer.store(lines(15, 5))  # still behind the spool while it holds anything
    replay_all(writer)
    assert b"".join(sink.lines) == lines(0, 20)


def test_refused_write_is_spooled_without_retries_and_marked(tmp_path: Path) -> None:
    writer, sink, _ = make(tmp_path)
    sink.mode = "refused"
    writer.store(lines(0, 3))
    assert sink.writes == 1
    assert writer.status.state == "refused" and "database not found" in (
        writer.status.last_error or ""
    )
    sink.mode = "up"
    replay_all(writer)
    assert len(sink.lines) == 3 and writer.status.state == "ok"


def test_bad_lines_are_dead_lettered_with_their_origin(tmp_path: Path) -> None:
    writer, sink, bad = make(tmp_path)
    body = b"m v=1 1\nm bad=1 2\nm v=3 3\n"
    origins = [("t/1", b"p1"), ("t/2", b"p2"), ("t/3", b"p3")]
    assert writer.store(body, origins) is True
    assert sink.lines == [b"m v=1 1\n", b"m v=3 3\n"]
    assert [(o, line) for o, line, _ in bad] == [(("t/2", b"p2"), b"m bad=1 2\n")]


def test_full_spool_blocks_instead_of_dropping(tmp_path: Path) -> None:
    writer, sink, _ = make(tmp_path, max_bytes=64 * 1024)
    sink.mode = "down"
    chunk = b"x" * 20_000 + b"\n"
    for _ in range(3):
        writer.store(chunk)
    stored = threading.Event()
    result: list[object] = []

    def blocked_store() -> None:
        try:
            result.append(writer.store(chunk))
        except Abandoned:
            result.append("abandoned")
        stored.set()

    thread = threading.Thread(target=blocked_store, daemon=True)
    thread.start()
    assert not stored.wait(0.3)  # held: its messages stay unacknowledged
    assert writer.status.spool_full
    sink.mode = "up"  # the database drains the spool, making room
    assert stored.wait(20)
    replay_all(writer)
    assert len(sink.lines) == 4 and result == [False]


def test_stopping_with_a_full_spool_abandons_the_batch(tmp_path: Path) -> None:
    writer, sink, _ = make(tmp_path, max_bytes=64 * 1024)
    sink.mode = "down"
    chunk = b"x" * 30_000 + b"\n"
    writer.store(chunk)
    writer.store(chunk)
    writer.stopping.set()
    with pytest.raises(Abandoned):
        writer.store(chunk)
    assert writer.spool.records == 2
