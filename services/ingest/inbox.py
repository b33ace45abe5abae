"""Hand-over from paho's network thread to the encode thread: a deque, woken only when idle.

``queue.Queue`` takes a lock and notifies a Condition per message on both sides; here the
writer appends (atomic under the GIL) and signals only when the reader is asleep, and the
reader drains whole bursts. Bounded: a full inbox blocks the writer (back-pressure) until the
reader takes, the timeout passes or the inbox is closed (shutdown), so no put waits forever.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """Single writer, single reader."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._reader_asleep = False
        self._writer_asleep = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Append; blocks while full (QoS 0 floods, or a broker ignoring Receive Maximum). False,
        with nothing added, on timeout or once the inbox is closed."""
        items = self._items
        if self._closed or (len(items) >= self.maxsize and not self._wait_for_room(timeout)):
            return False
        items.append(item)
        # Checked after the append: a reader that set the flag before our append is waiting
        # (or about to re-check under the lock) and needs the signal; one that sets it after
        # sees the item.
        if self._reader_asleep:
            with self._cond:
                self._cond.notify()
        return True

    def _wait_for_room(self, timeout: float | None) -> bool:
        with self._cond:
            self._writer_asleep = True
            try:
                self._cond.wait_for(
                    lambda: self._closed or len(self._items) < self.maxsize, timeout
                )
                return not self._closed and len(self._items) < self.maxsize
            finally:
                self._writer_asleep = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """No more puts: a blocked writer returns False at once, a sleeping reader wakes; what is
        already inside can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Until something is in the inbox or ``timeout`` passes; True if not empty."""
        if self._items:
            return True
        with self._cond:
            self._reader_asleep = True
            try:
                if not self._items and not self._closed:
                    self._cond.wait(timeout)
            finally:
                self._reader_asleep = False
        return bool(self._items)

    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` items, oldest first (never blocks)."""
        items = self._items
        count = min(limit, len(items))
        taken = [items.popleft() for _ in range(count)]
        if self._writer_asleep and taken:
            with self._cond:
                self._cond.notify()
        return taken
