"""Partial writes: bisection finds exactly the refused lines and stores all the others."""

from __future__ import annotations

from services.ingest.salvage import write_salvaging
from services.ingest.sinks.base import Outcome, WriteResult
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
