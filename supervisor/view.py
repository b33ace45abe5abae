"""`make run`'s live figures: scrape the services' /metrics and render them (rich or plain)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from supervisor.child import ChildRow, ChildState

RATE_WINDOW_S = 5.0


def scrape(port: int | None, timeout: float = 1.0) -> dict[str, float]:
    """Sum every sample of every metric family by sample name; {} when unreachable."""
    if not port:
        return {}
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


@dataclass
class Figures:
    """What the operator watches; every value is read from a service's /metrics."""

    received: float = 0.0
    stored: float = 0.0
    spooled: float = 0.0
    rejected: float = 0.0
    alerts_firing: float = 0.0
    alerts_fired: float = 0.0
    dispatches: float = 0.0
    messages_per_s: float = 0.0
    _history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=64))

    def update(self, ingest: Mapping[str, float], alerts: Mapping[str, float]) -> None:
        now = time.monotonic()
        if ingest:
            self.received = ingest.get("ingest_messages_received_total", self.received)
            self.stored = ingest.get("ingest_points_stored_total", self.stored)
            self.spooled = ingest.get("ingest_points_spooled_total", self.spooled)
            self.rejected = ingest.get("ingest_messages_rejected_total", self.rejected)
            self._history.append((now, self.received))
            while len(self._history) > 2 and now - self._history[1][0] >= RATE_WINDOW_S:
                self._history.popleft()
            (t0, r0), (t1, r1) = self._history[0], self._history[-1]
            self.messages_per_s = (r1 - r0) / (t1 - t0) if t1 > t0 else 0.0
        if alerts:
            self.alerts_firing = alerts.get("alerts_firing", self.alerts_firing)
            self.alerts_fired = alerts.get("alerts_transitions_total", self.alerts_fired)
            self.dispatches = alerts.get("alerts_dispatches_total", self.dispatches)

    def as_dict(self) -> dict[str, float]:
        return {
            "messages_per_s": round(self.messages_per_s, 2),
            "received": self.received,
            "stored": self.stored,
            "spooled": self.spooled,
            "rejected": self.rejected,
            "alerts_firing": self.alerts_firing,
            "alert_transitions": self.alerts_fired,
            "dispatch_events": self.dispatches,
        }

    def line(self) -> str:
        return (
            f"{self.messages_per_s:7.1f} msg/s  stored {self.stored:.0f}  "
            f"spooled {self.spooled:.0f}  rejected {self.rejected:.0f}  "
            f"alerts firing {self.alerts_firing:.0f}  dispatch events {self.dispatches:.0f}"
        )


STATE_STYLE = {
    ChildState.RUNNING: "green",
    ChildState.FINISHED: "green",
    ChildState.RESTARTING: "yellow",
    ChildState.STOPPING: "yellow",
    ChildState.STOPPED: "dim",
}


def render(
    header: Sequence[str], rows: Sequence[ChildRow], figures: Figures, notes: Sequence[str]
) -> Group:
    """The terminal view: where things go, the processes, the figures, recent notes."""
    processes = Table(expand=True, box=None, pad_edge=False)
    for column in ("process", "state", "pid", "restarts", ""):
        processes.add_column(column)
    for row in rows:
        style = STATE_STYLE[row.state]
        processes.add_row(
            row.name,
            Text(row.state, style=style),
            str(row.pid or "-"),
            str(row.restarts),
            row.note,
        )
    numbers = Table(expand=True, box=None, show_header=True, pad_edge=False)
    for column in ("msg/s", "stored", "rejected", "spooled", "alerts firing", "dispatches"):
        numbers.add_column(column, justify="right")
    numbers.add_row(
        f"{figures.messages_per_s:.1f}",
        f"{figures.stored:.0f}",
        f"{figures.rejected:.0f}",
        f"{figures.spooled:.0f}",
        f"{figures.alerts_firing:.0f}",
        f"{figures.dispatches:.0f}",
    )
    parts: list[Panel | Text] = [
        Panel(
            Text("\n".join(header)), title="facility-monitor (make run)", subtitle="Ctrl-C stops"
        ),
        Panel(processes, title="processes"),
        Panel(numbers, title="figures (from /metrics)"),
    ]
    if notes:
        parts.append(Panel(Text("\n".join(notes[-6:])), title="notes"))
    return Group(*parts)
