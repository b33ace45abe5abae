"""The ``Notifier`` protocol and a retrying delivery queue shared by the HTTP notifiers."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, TypedDict

from services.alerts.alert_lifecycle import Transition
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.outbox import Outbox

log = logging.getLogger(__name__)


class Notifier(Protocol):
    name: str

    def notify(self, transition: Transition) -> None:
        """Hand over a transition; must not block on the network."""

    def close(self, timeout: float) -> None:
        """Deliver what can be delivered within ``timeout``, then stop."""


class QueueArgs(TypedDict, total=False):
    """A ``DeliveryQueue``'s retry and size limits (``ALERTS_RETRY_*``, ``ALERTS_QUEUE_MAX``)."""

    base_s: float
    max_s: float
    max_items: int


class DeliveryError(Exception):
    """One delivery attempt failed; it will be retried."""


def content_key(payload: object) -> str:
    """A stable key for a payload that has no idempotency key of its own."""
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


class DeliveryQueue:
    """Delivers items in order on its own thread. A failed item stays at the head and is
    retried with capped exponential backoff (with jitter), so a receiver sees transitions in
    the order they happened; nothing is dropped except when the queue is full (counted).
    With an ``outbox`` every queued item is journaled (fsynced) first and reloaded at the next
    start, so a crash loses nothing; payloads must then be JSON values."""

    def __init__(
        self,
        name: str,
        deliver: Callable[[object], None],
        metrics: AlertsMetrics,
        *,
        base_s: float = 1.0,
        max_s: float = 300.0,
        max_items: int = 10_000,
        outbox: Outbox | None = None,
        key: Callable[[object], str] = content_key,
    ) -> None:
        self.name = name
        self.deliver = deliver
        self.metrics = metrics
        self.base_s, self.max_s, self.max_items = base_s, max_s, max_items
        self.outbox = outbox
        self.key = key
        # (outbox seq or None when not journaled, payload)
        self._items: deque[tuple[int | None, object]] = deque()
        if outbox is not None:
            self._reload(outbox)
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name=f"deliver-{name}", daemon=True)
        self._thread.start()

    def put(self, payload: object) -> None:
        with self._cond:
            if len(self._items) >= self.max_items:
                self.metrics.deliveries.labels(self.name, "dropped").inc()
                log.error("delivery queue full, dropping", extra={"notifier": self.name})
                return
            seq: int | None = None
            if self.outbox is not None:
                try:
                    seq = self.outbox.append(self.key(payload), payload)
                except OSError as exc:
                    # Still deliverable while the process lives; only a crash would lose it.
                    log.error(
                        "outbox write failed, item kept in memory only",
                        extra={"notifier": self.name, "error": str(exc)},
                    )
            self._items.append((seq, payload))
            self.metrics.queued.labels(self.name).set(len(self._items))
            self._cond.notify_all()

    def _reload(self, outbox: Outbox) -> None:
        """Undelivered items of the last run go first, in their order, within the bound."""
        pending = outbox.pending
        for seq, payload in pending[: self.max_items]:
            self._items.append((seq, payload))
        for seq, _ in pending[self.max_items :]:
            self.metrics.deliveries.labels(self.name, "dropped").inc()
            self._mark_done(seq)
        if len(pending) > self.max_items:
            log.error(
                "outbox holds more than the queue limit, dropping the newest",
                extra={"notifier": self.name, "dropped": len(pending) - self.max_items},
            )
        if pending:
            log.info(
                "reloaded undelivered items", extra={"notifier": self.name, "items": len(pending)}
            )
        self.metrics.queued.labels(self.name).set(len(self._items))

    def _mark_done(self, seq: int | None) -> None:
        if self.outbox is None or seq is None:
            return
        try:
            self.outbox.done(seq)
        except OSError as exc:
            # The item was delivered; at worst it is delivered again after a restart.
            log.error("outbox update failed", extra={"notifier": self.name, "error": str(exc)})

    def pending(self) -> int:
        with self._cond:
            return len(self._items)

    def _run(self) -> None:
        attempts = 0
        while True:
            with self._cond:
                while not self._stopping and (not self._items or self._retry_at > time.monotonic()):
                    wait = self._retry_at - time.monotonic() if self._items else None
                    self._cond.wait(wait)
                if self._stopping:
                    return
                _, item = self._items[0]
                self._busy = True
            try:
                self.deliver(item)
            except Exception as exc:
                attempts += 1
                delay = min(self.max_s, self.base_s * 2 ** min(attempts - 1, 20))
                delay *= random.uniform(0.8, 1.2)
                self.metrics.deliveries.labels(self.name, "failed").inc()
                log.warning(
                    "delivery failed, will retry",
                    extra={
                        "notifier": self.name,
                        "attempts": attempts,
                        "retry_in_s": round(delay, 2),
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
                with self._cond:
                    self._retry_at = time.monotonic() + delay
                    self._busy = False
                    self._cond.notify_all()
                continue
            attempts = 0
            self.metrics.deliveries.labels(self.name, "delivered").inc()
            with self._cond:
                seq, _ = self._items.popleft()
                self._mark_done(seq)
                self._busy = False
                self._retry_at = 0.0
                self.metrics.queued.labels(self.name).set(len(self._items))
                self._cond.notify_all()

    def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the queue to drain, then stop the thread."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._items and time.monotonic() < deadline:
                if not self._busy and self._retry_at > deadline:
                    break  # the next try is after our deadline; waiting is pointless
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            left = len(self._items)
            self._stopping = True
            self._cond.notify_all()
        if left:
            kept = " (kept in the outbox for the next start)" if self.outbox else ""
            log.error(
                "undelivered at shutdown" + kept, extra={"notifier": self.name, "items": left}
            )
        self._thread.join(timeout=2)
        if self.outbox is not None:
            with self._cond:
                self.outbox.close()
