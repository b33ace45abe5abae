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


class Undeliverable(Exception):
    """The receiver refused the item for good (e.g. a 400): retrying cannot help, and it would
    hold back every later item, so the queue hands it to ``on_refused`` and moves on."""


def content_key(payload: object) -> str:
    """A stable key for a payload that has no idempotency key of its own."""
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


class DeliveryQueue:
    """Delivers items in order on its own thread. A failed item stays at the head and is
    retried with capped exponential backoff (with jitter), so a receiver sees transitions in
    the order they happened; nothing is dropped except when the queue is full (counted) or
    the receiver refuses an item for good (``Undeliverable``: counted as ``refused`` and handed
    to ``on_refused``). With an ``outbox`` every queued item is journaled (fsynced) first and
    reloaded at the next start, so a crash loses nothing; payloads must then be JSON values.
    An item the outbox cannot take (disk full) stays queued in memory (within ``max_items``)
    and is journaled late, in order, every ``journal_retry_s`` until the disk has room."""

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
        on_refused: Callable[[object, Undeliverable], None] | None = None,
        journal_retry_s: float = 1.0,
    ) -> None:
        self.name = name
        self.deliver = deliver
        self.metrics = metrics
        self.base_s, self.max_s, self.max_items = base_s, max_s, max_items
        self.outbox = outbox
        self.key = key
        self.on_refused = on_refused
        self.journal_retry_s = journal_retry_s
        # (outbox seq or None when not journaled, payload)
        self._items: deque[tuple[int | None, object]] = deque()
        # The last ``_unjournaled`` items are not in the outbox yet (it failed to take them);
        # they are journaled in order, so they always form the tail of the queue.
        self._unjournaled = 0
        self._journal_at = 0.0
        self._journal_failing = False
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
            self._items.append((None, payload))
            if self.outbox is not None:
                self._unjournaled += 1
                self._journal_late()
            self.metrics.queued.labels(self.name).set(len(self._items))
            self._cond.notify_all()

    def _journal_late(self) -> None:
        """Journal the items the outbox has not taken yet, oldest first; stop at the first
        failure (disk still full) and try again after ``journal_retry_s``. Lock held."""
        assert self.outbox is not None
        start = len(self._items) - self._unjournaled
        for index in range(start, len(self._items)):
            _, payload = self._items[index]
            try:
                seq = self.outbox.append(self.key(payload), payload)
            except OSError as exc:
                self._journal_at = time.monotonic() + self.journal_retry_s
                if not self._journal_failing:
                    self._journal_failing = True
                    # Still deliverable while the process lives; a crash or stop would lose it.
                    log.error(
                        "outbox write failed, items kept in memory until it has room",
                        extra={"notifier": self.name, "error": str(exc)},
                    )
                break
            self._items[index] = (seq, payload)
            self._unjournaled -= 1
        if self._journal_failing and self._unjournaled == 0:
            self._journal_failing = False
            log.warning("outbox has room again, journaled late", extra={"notifier": self.name})
        self.metrics.unjournaled.labels(self.name).set(self._unjournaled)

    def _pop_head(self) -> None:
        """The head was delivered or refused: forget it (and its outbox record). Lock held."""
        seq, _ = self._items.popleft()
        if self._unjournaled > len(self._items):
            self._unjournaled -= 1  # it went before the outbox took it
            self._journal_failing = self._journal_failing and self._unjournaled > 0
            self.metrics.unjournaled.labels(self.name).set(self._unjournaled)
        self._mark_done(seq)
        self._busy = False
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

    @property
    def unjournaled(self) -> int:
        """Items queued in memory only because the outbox could not take them yet (disk
        full); read without the lock (one int), as a hint that is never too low for long."""
        return self._unjournaled

    def _next_item(self) -> tuple[bool, object]:
        """Wait for an item due for delivery, journaling late ones meanwhile; (False, None)
        when stopping. Lock held."""
        while not self._stopping:
            now = time.monotonic()
            if self._unjournaled and now >= self._journal_at:
                self._journal_late()
            if self._items and self._retry_at <= now:
                self._busy = True
                return True, self._items[0][1]
            waits = [self._retry_at - now] if self._items else []
            if self._unjournaled:
                waits.append(self._journal_at - now)
            self._cond.wait(max(0.0, min(waits)) if waits else None)
        return False, None

    def _run(self) -> None:
        attempts = 0
        while True:
            with self._cond:
                found, item = self._next_item()
            if not found:
                return
            try:
                self.deliver(item)
            except Undeliverable as exc:
                attempts = 0
                self.metrics.deliveries.labels(self.name, "refused").inc()
                if self.on_refused is not None:
                    try:
                        self.on_refused(item, exc)
                    except Exception:
                        log.exception(
                            "handling a refused item failed", extra={"notifier": self.name}
                        )
                with self._cond:
                    self._retry_at = 0.0
                    self._pop_head()
                continue
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
                self._retry_at = 0.0
                self._pop_head()

    def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the queue to drain, then stop the thread."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._items and time.monotonic() < deadline:
                if not self._busy and self._retry_at > deadline:
                    break  # the next try is after our deadline; waiting is pointless
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=2)
        with self._cond:
            if self.outbox is not None and self._unjournaled:
                self._journal_late()  # a last chance for the disk to have room
            left, lost = len(self._items), self._unjournaled
            if left and self.outbox is None:
                log.error("undelivered at shutdown", extra={"notifier": self.name, "items": left})
            elif left:
                log.error(
                    f"undelivered at shutdown: {left - lost} kept in the outbox for the next "
                    f"start, {lost} lost (the outbox could not take them)",
                    extra={"notifier": self.name, "items": left, "kept": left - lost, "lost": lost},
                )
            if self.outbox is not None:
                self.outbox.close()
