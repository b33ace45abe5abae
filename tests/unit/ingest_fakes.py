"""A scriptable in-memory sink for ingest unit tests (the real sinks have integration tests)."""

from __future__ import annotations

from services.ingest.sinks.base import STORED, Outcome, WriteResult


class MemorySink:
    """Stores lines; refuses any batch holding a line with ``bad`` (400, as InfluxDB does for a
        field type conflict); ``mode`` "down"/"refused"/"throttled" simulates outages, "proxy400" a
    proxy refusing everything with a 400 that says nothing about any line."""

    name = "memory"

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.writes = 0
        self.checks = 0
        self.mode = "up"
        self.fail_next = 0

    def write(self, lines: bytes) -> WriteResult:
        self.writes += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return WriteResult(Outcome.RETRY, 503, "busy")
        if self.mode == "down":
            return WriteResult(Outcome.RETRY, None, "ConnectError: refused")
        if self.mode == "throttled":
            return WriteResult(Outcome.RETRY, 429, "slow down", retry_after_s=0.01)
        if self.mode == "refused":
            return WriteResult(Outcome.REFUSED, 404, "database not found")
        if self.mode == "proxy400":
            return WriteResult(Outcome.REJECTED, 400, "<html>400 Bad Request</html>")
        batch = lines.splitlines(keepends=True)
        if any(b"bad" in line for line in batch):
            return WriteResult(Outcome.REJECTED, 400, "partial write: field type conflict")
        self.lines.extend(batch)
        return STORED

    def check(self) -> WriteResult:
        self.checks += 1
        return STORED if self.mode == "up" else WriteResult(Outcome.RETRY, None, "down")

    def ensure_database(self, retention_s: int) -> None:
        pass

    def close(self) -> None:
        pass
