"""Partial writes: bisection finds exactly the refused lines and stores all the others."""

from __future__ import annotations

import pytest

from services.ingest.salvage import write_salvaging
from services.ingest.sinks.base import STORED, Outcome, WriteResult
from tests.unit.ingest_fakes import MemorySink


def body(names: list[str]) -> bytes:
    return b"".join(f"m,id={n} v=1 {i}\n".encode() for i, n in enumerate(names))


def test_clean_batch_is_one_write() -> None:
    sink = MemorySink()
    salvage = write_salvaging(sink, body(["a", "b", "c"]))
    assert salvage.result.stored and salvage.bad == [] and sink.writes == 1


def test_bad_lines_are_found_and_good_ones_stored() -> None:
    names = [f"ok{i}" for i in range(100)]
    for index in (0, 37, 38, 99):
        names[index] = f"bad{index}"
    sink = MemorySink()
    salvage = write_salvaging(sink, body(names))
    assert salvage.result.stored
    assert [index for index, _, _ in salvage.bad] == [0, 37, 38, 99]
    assert all(b"bad" in line for _, line, _ in salvage.bad)
    assert "field type conflict" in salvage.bad[0][2]
    stored = {line for line in sink.lines}
    assert stored == {line for line in body(names).splitlines(keepends=True) if b"bad" not in line}
    assert salvage.writes < 60  # bisection, not one write per line


def test_single_bad_line_batch() -> None:
    salvage = write_salvaging(MemorySink(), body(["bad"]))
    assert salvage.result.stored and [i for i, _, _ in salvage.bad] == [0]


def test_outage_during_bisection_returns_failure_and_what_is_left() -> None:
    sink = MemorySink()
    names = ["a", "bad", "c", "d"]

    original = sink.write

    def write_then_die(lines: bytes) -> WriteResult:
        result = original(lines)
        if sink.writes >= 2:
            sink.mode = "down"
        return result

    sink.write = write_then_die  # type: ignore[method-assign]
    full = body(names)
    salvage = write_salvaging(sink, full)
    assert salvage.result.outcome is Outcome.RETRY
    remaining = salvage.remaining(full)
    # Nothing good is thrown away: whatever was not proven bad is still to be stored.
    for line in full.splitlines(keepends=True):
        if b"bad" not in line:
            assert line in remaining


class ScriptedSink(MemorySink):
    """Refuses any body holding a ``bad`` line with ``batch_answer``, and a lone bad line with
    ``line_answer`` (so the answer to a whole batch and to one line can differ)."""

    def __init__(self, batch_answer: str, line_answer: str | None = None) -> None:
        super().__init__()
        self.batch_answer = batch_answer
        self.line_answer = line_answer if line_answer is not None else batch_answer

    def write(self, lines: bytes) -> WriteResult:
        self.writes += 1
        batch = lines.splitlines(keepends=True)
        if any(b"bad" in line for line in batch):
            detail = self.line_answer if len(batch) == 1 else self.batch_answer
            return WriteResult(Outcome.REJECTED, 400, detail)
        self.lines.extend(batch)
        return STORED


@pytest.mark.parametrize(
    "answer",
    [
        # InfluxDB 1.x (checked against influxd 1.6 in tests/integration)
        '{"error":"unable to parse \'bad line\': invalid field format"}',
        '{"error":"partial write: field type conflict: input field \\"v\\" on measurement '
        '\\"m\\" is type string, already exists as type float dropped=1"}',
        '{"error":"partial write: points beyond retention policy dropped=1"}',
        # InfluxDB 2.x
        '{"code":"invalid","message":"unable to parse \'bad line\': missing fields"}',
        '{"code":"unprocessable entity","message":"failure writing points to database: '
        'partial write: field type conflict: ... dropped=1"}',
    ],
)
def test_influxdb_per_line_refusals_are_bisected_and_dead_lettered(answer: str) -> None:
    names = ["a", "bad", "c", "d", "e", "f"]
    sink = ScriptedSink(answer)
    salvage = write_salvaging(sink, body(names))
    assert salvage.result.stored
    assert [i for i, _, _ in salvage.bad] == [1]
    assert len(sink.lines) == 5


def test_a_proxy_refusing_everything_is_a_sink_failure_after_one_write() -> None:
    sink = ScriptedSink("<html>400 Bad Request: plain HTTP sent to an HTTPS port</html>")
    salvage = write_salvaging(sink, body(["bad"] * 200))
    assert salvage.result.outcome is Outcome.REFUSED and salvage.result.status == 400
    assert salvage.bad == [] and sink.writes == 1
    assert "HTTPS port" in salvage.result.detail


def test_a_lone_line_refused_for_an_unknown_reason_is_a_sink_failure() -> None:
    sink = ScriptedSink("partial write: field type conflict", line_answer="400 Bad Request")
    salvage = write_salvaging(sink, body(["a", "b", "bad", "d", "e", "f", "g", "h"]))
    assert salvage.result.outcome is Outcome.REFUSED
    assert salvage.bad == []  # nothing is dead-lettered: the batch is kept whole


def test_most_of_a_batch_refused_is_a_sink_failure() -> None:
    names = ["bad", "bad", "c", "bad", "bad", "bad", "g", "bad"]
    salvage = write_salvaging(ScriptedSink("partial write: field type conflict"), body(names))
    assert salvage.result.outcome is Outcome.REFUSED and salvage.bad == []
    assert "most of the batch" in salvage.result.detail


def test_a_dropped_count_over_half_the_batch_needs_no_bisection() -> None:
    sink = ScriptedSink("partial write: points beyond retention policy dropped=7")
    salvage = write_salvaging(sink, body(["bad"] * 7 + ["ok"] * 3))
    assert salvage.result.outcome is Outcome.REFUSED and sink.writes == 1


def test_bisection_stops_at_its_write_budget() -> None:
    names = [f"bad{i}" if i % 10 == 3 else f"ok{i}" for i in range(1000)]  # 10 % refused
    sink = ScriptedSink("partial write: field type conflict")
    salvage = write_salvaging(sink, body(names), max_writes=50)
    assert salvage.result.outcome is Outcome.REFUSED and salvage.bad == []
    assert sink.writes <= 50 and salvage.writes == sink.writes
    assert "within 50 writes" in salvage.result.detail


def test_a_body_too_large_is_split_until_it_fits() -> None:
    class SmallBodies(MemorySink):
        def write(self, lines: bytes) -> WriteResult:
            self.writes += 1
            if lines.count(b"\n") > 2:
                return WriteResult(Outcome.REJECTED, 413, "request entity too large")
            self.lines.extend(lines.splitlines(keepends=True))
            return STORED

    sink = SmallBodies()
    salvage = write_salvaging(sink, body([f"n{i}" for i in range(8)]))
    assert salvage.result.stored and salvage.bad == [] and len(sink.lines) == 8
