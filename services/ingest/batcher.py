"""Collects encoded points and the acknowledgements they carry into size- or age-bounded batches."""

from __future__ import annotations

from dataclasses import dataclass, field

Ack = tuple[int, int, int]
"""``(mid, qos, generation)``: what to acknowledge, and on which MQTT connection it arrived."""

Origin = tuple[str, bytes, int]
"""``(topic, payload, received_ms)`` of the message a line came from, for its dead letter."""


@dataclass(slots=True)
class Batch:
    """Lines to write and, in arrival order, every message to acknowledge once they are stored
    (rejected messages included, so acknowledgements keep the order messages arrived in)."""

    lines: list[str] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    event_ms: list[int] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    first_received_s: float = 0.0

    def body(self) -> bytes:
        if not self.lines:
            return b""
        return ("\n".join(self.lines) + "\n").encode()


class Batcher:
    """A batch is due when it holds ``max_points`` messages or its oldest is ``max_wait_s`` old."""

    def __init__(self, max_points: int, max_wait_s: float) -> None:
        self.max_points = max_points
        self.max_wait_s = max_wait_s
        self._batch = Batch()

    def __len__(self) -> int:
        return len(self._batch.acks)

    def add_point(self, line: str, origin: Origin, event_ms: int, ack: Ack, now_s: float) -> None:
        batch = self._batch
        if not batch.acks:
            batch.first_received_s = now_s
        batch.lines.append(line)
        batch.origins.append(origin)
        batch.event_ms.append(event_ms)
        batch.acks.append(ack)

    def add_ack(self, ack: Ack, now_s: float) -> None:
        """A message that produced no point (rejected) but must be acknowledged in order."""
        if not self._batch.acks:
            self._batch.first_received_s = now_s
        self._batch.acks.append(ack)

    def due(self, now_s: float) -> bool:
        acks = len(self._batch.acks)
        if acks >= self.max_points:
            return True
        return acks > 0 and now_s - self._batch.first_received_s >= self.max_wait_s

    def wait_s(self, now_s: float) -> float | None:
        """Seconds until the current batch is due by age; None when it is empty."""
        if not self._batch.acks:
            return None
        return max(0.0, self._batch.first_received_s + self.max_wait_s - now_s)

    def take(self) -> Batch:
        batch, self._batch = self._batch, Batch()
        return batch
