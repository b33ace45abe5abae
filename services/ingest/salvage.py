"""Partial writes: when the database rejects a batch (400), find the bad lines by bisection,
keep the good ones, and hand the bad ones back for dead-lettering."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.ingest.sinks.base import STORED, Outcome, Sink, WriteResult


@dataclass(slots=True)
class Salvage:
    """How a write went: ``result`` is STORED when every good line is in the database;
    ``bad`` holds ``(line index, line, reason)`` of lines the database refused on their own."""

    result: WriteResult
    bad: list[tuple[int, bytes, str]] = field(default_factory=list)
    writes: int = 1

    def remaining(self, body: bytes) -> bytes:
        """``body`` without the bad lines: what still has to be stored after a failure."""
        if not self.bad:
            return body
        drop = {index for index, _, _ in self.bad}
        kept = [line for i, line in enumerate(body.splitlines(keepends=True)) if i not in drop]
        return b"".join(kept)


def write_salvaging(sink: Sink, body: bytes) -> Salvage:
    """Write ``body``; on a 400-class rejection bisect until each refused line stands alone.

    Re-writing good lines is harmless (same series and timestamp overwrite), so halves that
    a server partially accepted are simply written again. Costs ~2·log2(n) writes per bad line.
    If the database goes away mid-way, the failure is returned with the bad lines found so far.
    """
    first = sink.write(body)
    if first.outcome is not Outcome.REJECTED:
        return Salvage(first)
    # Encoded lines never contain a raw newline (the encoder escapes it), so this is exact.
    lines = body.splitlines(keepends=True)
    salvage = Salvage(STORED)
    pending: list[tuple[int, int, WriteResult]] = [(0, len(lines), first)]
    while pending:
        lo, hi, why = pending.pop()
        if hi - lo == 1:
            salvage.bad.append((lo, lines[lo], why.detail or f"HTTP {why.status}"))
            continue
        mid = (lo + hi) // 2
        halves: list[tuple[int, int, WriteResult]] = []
        for a, b in ((lo, mid), (mid, hi)):
            result = sink.write(b"".join(lines[a:b]))
            salvage.writes += 1
            if result.outcome is Outcome.REJECTED:
                halves.append((a, b, result))
            elif not result.stored:
                salvage.result = result
                salvage.bad.sort()
                return salvage
        # Reversed so the lower half is searched first: dead letters come out in line order.
        pending.extend(reversed(halves))
    salvage.bad.sort()
    return salvage
