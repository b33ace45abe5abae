"""A rich progress bar over simulated time, shown only on a terminal for longer runs."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from common.timestamps import ms_to_iso


class SimProgress:
    """Context manager; ``update(sim_ms)`` is cheap (rich refreshes on its own thread)."""

    def __init__(self, start_ms: int, end_ms: int, enabled: bool) -> None:
        self.start_ms, self.end_ms = start_ms, end_ms
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last = 0.0
        self._sim = start_ms

    @staticmethod
    def wanted(mode: str, expected_wall_s: float) -> bool:
        if mode == "off":
            return False
        if mode == "on":
            return True
        return sys.stdout.isatty() and expected_wall_s > 3

    def __enter__(self) -> SimProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]simulating"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[at]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
            total = max(1, (self.end_ms - self.start_ms) // 1000)
            self._task = self._progress.add_task("sim", total=total, at="")
        return self

    def update(self, sim_ms: int) -> None:
        self._sim = sim_ms
        if self._progress is None or self._task is None:
            return
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        done = max(0, (min(sim_ms, self.end_ms) - self.start_ms) // 1000)
        self._progress.update(self._task, completed=done, at=ms_to_iso(sim_ms)[:19] + "Z")

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._last = 0.0
            self.update(self._sim)
            self._progress.stop()
