"""Seeded randomness: one independent, reproducible stream per (seed, device, purpose).

Streams are keyed by strings (hashed with SHA-512 by :class:`random.Random`), so adding a device
or reordering the registry never changes another device's numbers.
"""

from __future__ import annotations

import math
import random


def stream(seed: int, *key: str) -> random.Random:
    return random.Random(":".join((str(seed), *key)))


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson-distributed count; exact for small means, normal approximation above 30."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
