"""Retry timing for database writes: exponential backoff with jitter, honouring Retry-After,
and the circuit breaker that stops writing to a database that does not answer."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class RetryPolicy:
    """Delay before attempt ``n + 1`` after ``n`` failures: ``base * 2**(n-1)`` capped at
    ``max_s``, drawn uniformly from its upper half (jitter keeps replicas from retrying in step).
    A server's Retry-After is a floor: we never come back sooner than asked."""

    base_s: float = 0.2
    max_s: float = 10.0
    attempts: int = 3
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failures: int, retry_after_s: float | None = None) -> float:
        exponent = min(max(failures - 1, 0), 30)
        ceiling = min(self.max_s, self.base_s * (2**exponent))
        wait = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None and retry_after_s > wait:
            # Capped too, so a silly header cannot park the pipeline for hours.
            wait = min(retry_after_s, max(self.max_s, 60.0))
        return wait


@dataclass(slots=True)
class CircuitBreaker:
    """Closed: batches are written. Open: batches go straight to the spool and the database is
    only probed (a short-timeout ping) until it answers; then it closes and the spool replays.

    Opens after ``failures_to_open`` consecutive failed writes, or at once after one failed
    write that took ``slow_s`` or longer (a black hole: every further try would cost a whole
    timeout while acknowledgements wait)."""

    failures_to_open: int = 3
    slow_s: float = 1.0
    failures: int = 0
    open: bool = False

    def succeeded(self) -> None:
        self.failures, self.open = 0, False

    def failed(self, took_s: float = 0.0) -> None:
        self.failures += 1
        if self.failures >= self.failures_to_open or took_s >= self.slow_s:
            self.open = True


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare here)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
