"""The ``Notifier`` protocol and a retrying delivery queue shared by the HTTP notifiers."""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from services.alerts.lifecycle import Transition
from services.alerts.metrics import AlertsMetrics

log = logging.getLogger(__name__)


class Notifier(Protocol):
    name: str

    def notify(self, transition: Transition) -> None:
        """Hand over a transition; must not block on the network."""

    def close(self, timeout: float) -> None:
        """Deliver what can be delivered within ``timeout``, then stop."""


class DeliveryError(Exception):
    """One delivery attempt failed; it will be retried."""


@dataclass(order=True, slots=True)
class _Item:
    due: float
    seq: int
    payload: object = field(compare=False)
    attempts: int = field(default=0, compare=False)


class DeliveryQueue:
    """Delivers items on its own thread; a failure is retried with capped exponential backoff
    (with jitter), never dropped, except when the queue is full (counted as ``dropped``)."""

    def __init__(
        self,
        name: str,
        deliver: Callable[[object], None],
        metrics: AlertsMetrics,
        *,
        base_s: float = 1.0,
        max_s: float = 300.0,
        max_items: int = 10_000,
    ) -> None:
        self.name = name
        self.deliver = deliver
        self.metrics = metrics
        self.base_s, self.max_s, self.max_items = base_s, max_s, max_items
        self._heap: list[_Item] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=f"deliver-{name}", daemon=True)
        self._thread.start()

    def put(self, payload: object) -> None:
        with self._cond:
            if len(self._heap) >= self.max_items:
                self.metrics.deliveries.labels(self.name, "dropped").inc()
                log.error("delivery queue full, dropping", extra={"notifier": self.name})
                return
            heapq.heappush(self._heap, _Item(time.monotonic(), next(self._seq), payload))
            self.metrics.queued.labels(self.name).set(len(self._heap))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + (1 if self._busy else 0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                    not self._heap or self._heap[0].due > time.monotonic()
                ):
                    wait = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._stopping:
                    return
                item = heapq.heappop(self._heap)
                self._busy = True
            try:
                self.deliver(item.payload)
            except Exception as exc:
                item.attempts += 1
                delay = min(self.max_s, self.base_s * 2 ** min(item.attempts - 1, 20))
                item.due = time.monotonic() + delay * random.uniform(0.8, 1.2)
                self.metrics.deliveries.labels(self.name, "failed").inc()
                log.warning(
                    "delivery failed, will retry",
                    extra={
                        "notifier": self.name,
                        "attempts": item.attempts,
                        "retry_in_s": round(delay, 2),
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
                with self._cond:
                    heapq.heappush(self._heap, item)
            else:
                self.metrics.deliveries.labels(self.name, "delivered").inc()
            with self._cond:
                self._busy = False
                self.metrics.queued.labels(self.name).set(len(self._heap))
                self._cond.notify_all()

    def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` for due items to drain, then stop the thread."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._heap or self._busy) and time.monotonic() < deadline:
                if self._heap and not self._busy and self._heap[0].due > deadline:
                    break  # the next try is after our deadline; waiting is pointless
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            left = len(self._heap)
            self._stopping = True
            self._cond.notify_all()
        if left:
            log.error("undelivered at shutdown", extra={"notifier": self.name, "items": left})
        self._thread.join(timeout=2)
