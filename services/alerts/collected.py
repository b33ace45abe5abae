"""When each bin was last emptied, in event time: the one record the rule engine and the
dispatch desk both read (the core hands them the same instance)."""

from __future__ import annotations


class CollectedBins:
    """bin -> event time of its last collection. A truck's status travels on its own
    connection and may overtake the bin's readings; a reading older than the bin's collection
    is history (*superseded*), not the bin's level."""

    __slots__ = ("_ms",)

    def __init__(self) -> None:
        self._ms: dict[str, int] = {}

    def record(self, device_id: str, ts_ms: int) -> None:
        """The bin was emptied at ``ts_ms``; an earlier instant never moves the cut-off back."""
        self._ms[device_id] = max(ts_ms, self._ms.get(device_id, ts_ms))

    def at(self, device_id: str) -> int | None:
        return self._ms.get(device_id)

    def supersedes(self, device_id: str, ts_ms: int) -> bool:
        """True if a reading taken at ``ts_ms`` predates the bin's last collection."""
        return ts_ms < self._ms.get(device_id, ts_ms)
