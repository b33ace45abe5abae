"""Simulated time: how long to wait before the event at a simulated instant may happen.

Timestamps come only from simulated time; the wall clock only paces publishing. A run faster
than real time never publishes a ``ts`` ahead of the wall clock: once it catches up with now it
continues at real time (the contract rejects ``ts`` more than 5 minutes in the future).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

MAX_WAIT_S = 0.5  # wake up at least this often to notice stop requests


class Pacer(Protocol):
    def wait_until(self, sim_ms: int, wake: threading.Event) -> bool:
        """Block until ``sim_ms`` may happen (True), or until ``wake`` is set (False)."""
        ...

    def sim_now(self) -> int:
        """The simulated instant the wall clock corresponds to right now."""
        ...


class NoWait:
    """As fast as possible and with no wall clock at all: for tests and pure backfills."""

    def __init__(self, start_ms: int) -> None:
        self._now = start_ms

    def wait_until(self, sim_ms: int, wake: threading.Event) -> bool:
        self._now = max(self._now, sim_ms)
        return True

    def sim_now(self) -> int:
        return self._now


class ScaledClock:
    """``speed`` simulated seconds per wall second from ``start_ms``, never ahead of now.

    ``speed=math.inf`` is a backfill: the past as fast as possible, then real time.
    """

    def __init__(self, start_ms: int, speed: float, wall: Callable[[], float] = time.time) -> None:
        self.start_ms = start_ms
        self.speed = speed
        self._wall = wall
        self._wall0 = wall()

    def wall_target(self, sim_ms: int) -> float:
        scaled = (
            self._wall0
            if math.isinf(self.speed)
            else self._wall0 + (sim_ms - self.start_ms) / 1000 / self.speed
        )
        return max(scaled, sim_ms / 1000)

    def sim_now(self) -> int:
        wall = self._wall()
        real = int(wall * 1000)
        if math.isinf(self.speed):
            return real
        return min(self.start_ms + int((wall - self._wall0) * self.speed * 1000), real)

    def wait_until(self, sim_ms: int, wake: threading.Event) -> bool:
        target = self.wall_target(sim_ms)
        while True:
            remaining = target - self._wall()
            if remaining <= 0:
                return True
            if wake.wait(min(remaining, MAX_WAIT_S)):
                return False


class SkewBound:
    """Wraps a pacer for runs faster than real time over one connection per device: every
    ``step_ms`` of simulated time it waits (``barrier()``) until the broker acknowledged
    everything sent so far, so no connection gets more than about one step ahead of another.

    Without it a backfill's connections drift apart by many minutes and a receiver that
    judges silence on the stream's latest ``ts`` sees devices that are merely behind as gone.
    Only the timing changes: the messages and their order per connection stay the same.
    """

    def __init__(self, pacer: Pacer, barrier: Callable[[], object], step_ms: int) -> None:
        self.pacer = pacer
        self.barrier = barrier
        self.step_ms = step_ms
        self.next_ms: int | None = None

    def wait_until(self, sim_ms: int, wake: threading.Event) -> bool:
        if self.next_ms is None:
            self.next_ms = (sim_ms // self.step_ms + 1) * self.step_ms
        elif sim_ms >= self.next_ms:
            self.barrier()
            self.next_ms = (sim_ms // self.step_ms + 1) * self.step_ms
        return self.pacer.wait_until(sim_ms, wake)

    def sim_now(self) -> int:
        return self.pacer.sim_now()
