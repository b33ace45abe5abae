"""The store stage: database first, spool on outage, replay in order, never drop."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from services.ingest.metrics import IngestMetrics
from services.ingest.retry import CircuitBreaker, RetryPolicy
from services.ingest.sinks.base import Outcome, WriteResult
from services.ingest.spool import Spool
from services.ingest.writer import Abandoned, Writer
from tests.unit.ingest_fakes import MemorySink

FAST = RetryPolicy(base_s=0.001, max_s=0.002, attempts=3, rng=random.Random(0))


def lines(start: int, count: int) -> bytes:
    return b"".join(f"m v={i} {i}\n".encode() for i in range(start, start + count))


def make(
    tmp_path: Path,
    max_bytes: int = 10**6,
    *,
    sink: MemorySink | None = None,
    policy: RetryPolicy = FAST,
    breaker: CircuitBreaker | None = None,
) -> tuple[Writer, MemorySink, list[tuple[object, bytes, str]]]:
    """A writer over ``sink`` (a fresh ``MemorySink`` by default) and a spool in ``tmp_path``;
    the list collects every dead-lettered (origin, line, reason)."""
    sink = MemorySink() if sink is None else sink
    bad: list[tuple[object, bytes, str]] = []
    writer = Writer(
        sink,
        Spool(tmp_path / "spool", max_bytes=max_bytes, segment_bytes=4096),
        policy,
        IngestMetrics(),
        on_bad_line=lambda origin, line, reason, _replayed: bad.append((origin, line, reason)),
        replay_budget_s=5.0,
        breaker=breaker,
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
    origins = [("t/1", b"p1", 1), ("t/2", b"p2", 2), ("t/3", b"p3", 3)]
    assert writer.store(body, origins) is True
    assert sink.lines == [b"m v=1 1\n", b"m v=3 3\n"]
    assert [(o, line) for o, line, _ in bad] == [(("t/2", b"p2", 2), b"m bad=1 2\n")]


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


class FailsAfterEachNewBadLine(MemorySink):
    """The database drops out (503) once, right after first refusing each bad line alone: a
    store's retries then each find a different bad line before failing."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_bad: set[bytes] = set()
        self.fail_once = False

    def write(self, lines: bytes) -> WriteResult:
        if self.fail_once:
            self.fail_once = False
            self.writes += 1
            return WriteResult(Outcome.RETRY, 503, "busy")
        result = super().write(lines)
        if b"bad" in lines and lines.count(b"\n") == 1 and lines not in self.seen_bad:
            self.seen_bad.add(lines)
            self.fail_once = True
        return result


def test_retries_drop_each_attempts_bad_lines_from_that_attempts_body(tmp_path: Path) -> None:
    policy = RetryPolicy(base_s=0.001, max_s=0.002, attempts=2, rng=random.Random(0))
    writer, sink, bad = make(tmp_path, sink=FailsAfterEachNewBadLine(), policy=policy)

    def dead() -> list[bytes]:
        return [line for _, line, _ in bad]

    body = b"m v=0 0\nm bad=1 1\nm v=2 2\nm v=3 3\nm bad=4 4\nm v=5 5\nm v=6 6\nm v=7 7\n"
    assert writer.store(body) is False
    # Attempt 1 dead-lettered "bad=1"; what is spooled is the body without it, not the
    # original body with the last attempt's line numbers applied to it.
    assert dead() == [b"m bad=1 1\n"]
    record = writer.spool.peek()
    assert record is not None and record.data == body.replace(b"m bad=1 1\n", b"")
    replay_all(writer)
    assert sorted(dead()) == [b"m bad=1 1\n", b"m bad=4 4\n"]  # each exactly once
    good = {line for line in body.splitlines(keepends=True) if b"bad" not in line}
    assert set(sink.lines) == good


def test_a_proxy_refusing_everything_spools_unhealthy_and_dead_letters_nothing(
    tmp_path: Path,
) -> None:
    writer, sink, bad = make(tmp_path)
    sink.mode = "proxy400"
    assert writer.store(lines(0, 50)) is False
    assert sink.writes == 1  # no bisection, no retries
    assert bad == [] and writer.spool.records == 1
    assert writer.status.state == "refused" and writer.status.last_status == 400
    writer.store(lines(50, 50))
    sink.mode = "up"  # the proxy is fixed
    replay_all(writer)
    assert b"".join(sink.lines) == lines(0, 100) and bad == []
    assert writer.status.state == "ok"


def test_an_open_breaker_spools_without_writing_and_only_probes(tmp_path: Path) -> None:
    # Every failure counts as slow: a black hole that made the write wait out its timeout.
    writer, sink, _ = make(tmp_path, breaker=CircuitBreaker(failures_to_open=3, slow_s=0.0))
    sink.mode = "down"
    assert writer.store(lines(0, 5)) is False
    assert sink.writes == 1  # one timed-out write opens the breaker: no attempts x timeout
    assert writer.breaker.open and writer.status.state == "unreachable"
    for start in range(5, 50, 5):
        assert writer.store(lines(start, 5)) is False
    assert sink.writes == 1  # spooled without trying
    writer.replay(force=True)
    assert sink.writes == 1 and sink.checks == 1  # a probe, not a write
    sink.mode = "up"
    replay_all(writer)
    assert not writer.breaker.open and writer.status.state == "ok"
    assert b"".join(sink.lines) == lines(0, 50)


def test_a_failed_probe_opens_the_breaker_before_any_batch(tmp_path: Path) -> None:
    writer, sink, _ = make(tmp_path, breaker=CircuitBreaker(failures_to_open=3, slow_s=0.0))
    sink.mode = "down"
    writer.probe()  # at start: the database does not answer
    assert writer.store(lines(0, 5)) is False and sink.writes == 0
