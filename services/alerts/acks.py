"""When an inbound message may be acknowledged: once it is judged and what its judging
produced is durable, and only after every message that arrived before it.

An acknowledgement tells the broker to forget a message, so it is the commit point: a
message still held (waiting for the retained state), or whose alert publishes the broker has
not acknowledged yet (PUBACK), or whose outbox record is not on disk, must stay with the
broker, which redelivers it after a crash. MQTT expects PUBACKs in the order the PUBLISHes
arrived, so one message waiting holds back the acknowledgements of all behind it.

Plain object, no locks and no I/O: the service calls it under its own lock and sends what
``take_ready`` returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Durable(Protocol):
    """Something a message's judging produced that becomes durable later: a QoS 1 publish
    (paho's ``MQTTMessageInfo``: ``mid`` and ``is_published()`` once PUBACKed) or an outbox
    record not yet written (``mid`` 0)."""

    @property
    def mid(self) -> int: ...

    def is_published(self) -> bool: ...


class _Together:
    """Durables that many messages wait for: what judging the held messages caused (the
    restore). Shared, and emptied from the front once, so each held message costs O(1)
    instead of a pass over thousands of publishes. PUBACKs come in publish order, so the
    front is the one to wait for."""

    __slots__ = ("pending",)
    mid = 0

    def __init__(self, pending: list[Durable]) -> None:
        self.pending = deque(pending)

    def is_published(self) -> bool:
        return self.settle(0)

    def settle(self, published_mid: int) -> bool:
        pending = self.pending
        while pending and _done(pending[0], published_mid):
            pending.popleft()
        return not pending


def _done(durable: Durable, published_mid: int) -> bool:
    if isinstance(durable, _Together):
        return durable.settle(published_mid)
    return durable.is_published() or (published_mid != 0 and durable.mid == published_mid)


@dataclass(slots=True)
class _Entry:
    mid: int
    """Packet id to acknowledge; 0 for a QoS 0 message (waits like the others, sends none)."""
    waits_for: list[Durable] = field(default_factory=list)
    held: bool = False
    """Not judged yet: it waits for the retained state to be restored."""


class AckLedger:
    """Inbound messages in arrival order, each waiting until it may be acknowledged."""

    def __init__(self) -> None:
        self._entries: deque[_Entry] = deque()
        self._ready: list[int] = []

    def __len__(self) -> int:
        """Messages received but not yet acknowledgeable."""
        return len(self._entries)

    @property
    def ready(self) -> int:
        """Packet ids that may be acknowledged now (``take_ready`` sends them)."""
        return len(self._ready)

    def new_connection(self) -> None:
        """A (re)connect: packet ids of the old connection mean nothing on the new one, and
        the broker redelivers those messages; acknowledging by an old id could acknowledge a
        different message, so everything pending is dropped."""
        self._entries.clear()
        self._ready.clear()

    def judged(
        self,
        mid: int,
        waits_for: Sequence[Durable] = (),
        *,
        held: bool = False,
        releases_held: bool = False,
    ) -> None:
        """A message (packet id ``mid``, 0 for QoS 0) was handled. ``held``: it waits for the
        restore, not judged yet. ``releases_held``: its handling judged every held message
        (the restore finished), so they wait for what it produced as well."""
        pending = [d for d in waits_for if not d.is_published()] if waits_for else []
        if releases_held:
            together: list[Durable] = [_Together(pending)] if pending else []
            for entry in self._entries:
                if entry.held:
                    entry.held = False
                    entry.waits_for = together
        if not self._entries and not pending and not held:
            if mid:
                self._ready.append(mid)  # the usual case: nothing ahead, nothing to wait for
            return
        self._entries.append(_Entry(mid, pending, held))
        self.settle()

    def settle(self, published_mid: int = 0) -> int:
        """Move the messages at the head that wait for nothing any more to ``ready``; how
        many are ready now.

        ``published_mid``: a publish just acknowledged by the broker whose ``is_published``
        may not say so yet (paho calls ``on_publish`` before it marks the message)."""
        entries = self._entries
        while entries:
            head = entries[0]
            if head.held:
                break
            if head.waits_for:
                waits = head.waits_for
                if not all(_done(d, published_mid) for d in waits):
                    head.waits_for = [d for d in waits if not _done(d, published_mid)]
                    break
                head.waits_for = []
            entries.popleft()
            if head.mid:
                self._ready.append(head.mid)
        return len(self._ready)

    def take_ready(self) -> list[int]:
        """The packet ids to acknowledge now, in arrival order (and forget them)."""
        ready, self._ready = self._ready, []
        return ready
