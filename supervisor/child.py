"""One supervised program: its command line, its process, its log and what became of it."""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from common.proc import die_with_parent

STOP_TIMEOUT_S = 20.0


class ChildState(StrEnum):
    """Where a child is in its life; the values are what status.json and the view show."""

    STOPPED = "stopped"
    RUNNING = "running"
    RESTARTING = "restarting"
    FINISHED = "finished"
    STOPPING = "stopping"


@dataclass(frozen=True)
class ChildRow:
    """One line of the view's process table."""

    name: str
    state: ChildState
    pid: int | None
    restarts: int
    note: str


@dataclass
class Child:
    """One supervised program: how to start it and what became of it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    http_port: int | None = None
    # A finite job (a scenario that ends): exit 0 means done, not crashed.
    finishes: bool = False
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    state: ChildState = ChildState.STOPPED
    next_start: float = 0.0
    last_exit: int | None = None
    note: str = ""

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(
                f"--- {time.strftime('%H:%M:%S')} starting: {shlex.join(self.argv)}\n".encode()
            )
            log.flush()
            # Own session: the terminal's Ctrl-C reaches only the supervisor, which then
            # stops the children in order (simulator first, broker last).
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - only prctl runs before exec
            )
        self.state = ChildState.RUNNING

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.exited() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return self.last_exit
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
                self.note = f"killed after {timeout:.0f} s"
        self.last_exit = self.proc.returncode
        self.state = ChildState.STOPPED
        self.proc = None
        return self.last_exit

    def tail(self, lines: int = 5) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    def row(self) -> ChildRow:
        pid = self.proc.pid if self.proc is not None else None
        return ChildRow(self.name, self.state, pid, self.restarts, self.note)
