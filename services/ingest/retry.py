"""Retry timing for database writes: exponential backoff with jitter, honouring Retry-After."""

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


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare here)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
