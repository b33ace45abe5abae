"""Line-protocol file sink: appends batches to one file that ``influx write`` can load."""

from __future__ import annotations

import os
from pathlib import Path

from services.ingest.sinks.base import STORED, WriteResult, unreachable


class FileSink:
    """Appends and fsyncs each batch, so an acknowledged message is on disk."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    def write(self, lines: bytes) -> WriteResult:
        try:
            self._file.write(lines)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            return unreachable(exc)
        return STORED

    def check(self) -> WriteResult:
        return STORED if not self._file.closed else unreachable(OSError("file sink is closed"))

    def ensure_database(self, retention_s: int) -> None:
        """A file needs no database."""

    def close(self) -> None:
        self._file.close()
