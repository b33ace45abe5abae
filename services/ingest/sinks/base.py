"""The one small interface every sink implements, and how an HTTP answer maps onto it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    STORED = "stored"  # accepted: acknowledge the messages
    RETRY = "retry"  # 429, 5xx, connection error: try again later, spool meanwhile
    REJECTED = "rejected"  # 400-class: something in the batch is bad; find it, keep the rest
    REFUSED = "refused"  # 401/403/404: bad token or missing bucket; needs a person


@dataclass(frozen=True, slots=True)
class WriteResult:
    outcome: Outcome
    status: int | None = None
    detail: str = ""
    retry_after_s: float | None = None

    @property
    def stored(self) -> bool:
        return self.outcome is Outcome.STORED


STORED = WriteResult(Outcome.STORED, 204)


def classify(status: int, detail: str = "", retry_after_s: float | None = None) -> WriteResult:
    """Map an HTTP status of a write onto what the pipeline should do about it."""
    if 200 <= status < 300:
        return WriteResult(Outcome.STORED, status)
    if status in (401, 403, 404):
        return WriteResult(Outcome.REFUSED, status, detail[:500])
    if status == 429 or status >= 500 or status == 408:
        return WriteResult(Outcome.RETRY, status, detail[:500], retry_after_s)
    return WriteResult(Outcome.REJECTED, status, detail[:500])


def unreachable(exc: BaseException) -> WriteResult:
    return WriteResult(Outcome.RETRY, None, f"{type(exc).__name__}: {exc}"[:500])


class Sink(Protocol):
    """Where batches of line protocol (precision ms) go."""

    name: str

    def write(self, lines: bytes) -> WriteResult:
        """Write newline-terminated lines; never raises for server or network trouble."""
        ...

    def check(self) -> WriteResult:
        """Is the database there and answering (STORED means yes)?"""
        ...

    def ensure_database(self, retention_s: int) -> None:
        """Create the bucket/database when missing (called at start when allowed)."""
        ...

    def close(self) -> None: ...
