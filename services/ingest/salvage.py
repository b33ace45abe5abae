"""Partial writes: when the database refuses some lines of a batch, find them by bisection, keep
the good ones, and hand the bad ones back for dead-lettering.

Only refusals the database gives for a line's own content are bisected: InfluxDB 1.x/2.x answer
400/422 with "unable to parse", "partial write", "field type conflict" or "points beyond
retention policy", and 413 when a body is too large. VictoriaMetrics accepts and skips bad lines
itself (204). Anything else refused (a proxy, a TLS port behind ``http://``), or most of a
batch, is the sink failing, not the data: the batch is spooled and kept, never dead-lettered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.ingest.sinks.base import STORED, Outcome, Sink, WriteResult

PER_LINE_ERRORS = re.compile(
    r"unable to parse|partial write|field type conflict|beyond retention", re.IGNORECASE
)
"""What InfluxDB says when it refuses lines for their own content (1.x and 2.x alike)."""

_DROPPED = re.compile(r"dropped=(\d+)")

MOST_NEEDS_LINES = 4
"""A batch this long or longer with more than half of its lines refused is a sink failure;
shorter batches say too little (one reading alone may well be the bad one)."""

BISECT_MAX_WRITES = 256
"""Default bound on the writes one batch's bisection may make (~2·log2(n) per bad line)."""


@dataclass(slots=True)
class Salvage:
    """How a write went: ``result`` is STORED when every good line is in the database;
    ``bad`` holds ``(line index, line, reason)`` of lines the database refused on their own."""

    result: WriteResult
    bad: list[tuple[int, bytes, str]] = field(default_factory=list)
    writes: int = 1

    def remaining(self, body: bytes) -> bytes:
        """``body`` (the very body this write was given) without the bad lines: what still
        has to be stored after a failure."""
        if not self.bad:
            return body
        drop = {index for index, _, _ in self.bad}
        kept = [line for i, line in enumerate(body.splitlines(keepends=True)) if i not in drop]
        return b"".join(kept)


def refuses_lines(result: WriteResult) -> bool:
    """Is this a refusal of some lines for their own content (worth bisecting)?"""
    if result.outcome is not Outcome.REJECTED:
        return False
    return result.status == 413 or PER_LINE_ERRORS.search(result.detail) is not None


def is_most(bad: int, lines: int) -> bool:
    return lines >= MOST_NEEDS_LINES and 2 * bad > lines


def sink_failure(result: WriteResult, why: str) -> WriteResult:
    """A refusal that is the database's (or a proxy's) fault: keep the batch, needs a person."""
    detail = f"{why}: HTTP {result.status}: {result.detail}" if result.detail else why
    return WriteResult(Outcome.REFUSED, result.status, detail[:500])


def write_salvaging(sink: Sink, body: bytes, max_writes: int = BISECT_MAX_WRITES) -> Salvage:
    """Write ``body``; on a per-line refusal bisect until each refused line stands alone.

    Re-writing good lines is harmless (same series and timestamp overwrite), so halves that
    a server partially accepted are simply written again. At most ``max_writes`` writes; a
    refusal that is not per-line, more than half a batch refused, or a search that would need
    more writes end as a REFUSED result with no bad lines (nothing is dead-lettered).
    If the database goes away mid-way, the failure is returned with the bad lines found so far.
    """
    first = sink.write(body)
    if first.outcome is not Outcome.REJECTED:
        return Salvage(first)
    # Encoded lines never contain a raw newline (the encoder escapes it), so this is exact.
    lines = body.splitlines(keepends=True)
    if not refuses_lines(first):
        return Salvage(sink_failure(first, "the database refused the whole batch"))
    dropped = _DROPPED.search(first.detail)
    if dropped is not None and is_most(int(dropped.group(1)), len(lines)):
        return Salvage(sink_failure(first, "the database refused most of the batch"))
    salvage = Salvage(STORED)
    pending: list[tuple[int, int, WriteResult]] = [(0, len(lines), first)]
    while pending:
        lo, hi, why = pending.pop()
        if hi - lo == 1:
            salvage.bad.append((lo, lines[lo], why.detail or f"HTTP {why.status}"))
            if is_most(len(salvage.bad), len(lines)):
                return _gave_up(salvage, first, "the database refused most of the batch")
            continue
        if salvage.writes + 2 > max_writes:
            return _gave_up(salvage, first, f"refused lines not found within {max_writes} writes")
        mid = (lo + hi) // 2
        halves: list[tuple[int, int, WriteResult]] = []
        for a, b in ((lo, mid), (mid, hi)):
            result = sink.write(b"".join(lines[a:b]))
            salvage.writes += 1
            if result.outcome is Outcome.REJECTED:
                if not refuses_lines(result):
                    return _gave_up(salvage, result, "the database refused part of the batch")
                halves.append((a, b, result))
            elif not result.stored:
                salvage.result = result
                salvage.bad.sort()
                return salvage
        # Reversed so the lower half is searched first: dead letters come out in line order.
        pending.extend(reversed(halves))
    salvage.bad.sort()
    return salvage


def _gave_up(salvage: Salvage, answer: WriteResult, why: str) -> Salvage:
    return Salvage(sink_failure(answer, why), writes=salvage.writes)
