"""`make run`'s live view: the services' /metrics figures and what is happening in the city
(bins near full, alerts firing, dispatches, the cafe and the art center), rendered with rich."""

from __future__ import annotations

import io
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from supervisor.child import ChildRow, ChildState
from supervisor.scene import MAX_ROWS, NEAR_FULL_PCT, Scene

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
    header: Sequence[str],
    rows: Sequence[ChildRow],
    figures: Figures,
    notes: Sequence[str],
    scene: Scene | None = None,
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
    parts: list[RenderableType] = [
        Panel(
            Text("\n".join(header)), title="facility-monitor (make run)", subtitle="Ctrl-C stops"
        ),
        Panel(processes, title="processes"),
        Panel(numbers, title="figures (from /metrics)"),
    ]
    if scene is not None:
        parts.extend(render_scene(scene))
    if notes:
        parts.append(Panel(Text("\n".join(notes[-6:])), title="notes"))
    return Group(*parts)


def _kw(watts: float | None) -> str:
    return "-" if watts is None else f"{watts / 1000:.1f} kW"


def _more(shown: int, total: int) -> str:
    return f" (+{total - shown} more)" if total > shown else ""


def render_scene(scene: Scene) -> list[RenderableType]:
    """The city now: one panel each for bins, alerts, dispatches and the two facilities."""
    full = scene.near_full()
    bins = Table(expand=True, box=None, pad_edge=False)
    for column in ("bin", "fill", "weight", "reading at"):
        bins.add_column(column, justify="left" if column == "bin" else "right")
    for reading in full[:MAX_ROWS]:
        style = "red" if reading.fill_pct >= 95 else "yellow"
        bins.add_row(
            reading.device_id,
            Text(f"{reading.fill_pct:.0f} %", style=style),
            f"{reading.weight_kg:.1f} kg",
            reading.ts,
        )
    firing = scene.firing()
    alerts = Table(expand=True, box=None, pad_edge=False)
    for column in ("rule", "severity", "site", "device", "value", "threshold"):
        alerts.add_column(column)
    for event in firing[:MAX_ROWS]:
        alerts.add_row(
            event.rule,
            Text(event.severity, style="red" if event.severity == "critical" else "yellow"),
            event.site,
            event.device_id,
            "-" if event.value is None else f"{event.value:g}",
            "-" if event.threshold is None else f"{event.threshold:g}",
        )
    recent = scene.recent_dispatches()
    dispatches = Table(expand=True, box=None, pad_edge=False)
    for column in ("dispatch", "truck", "zone", "state", "stops", "planned", "collected"):
        dispatches.add_column(column)
    for dispatch in recent[:MAX_ROWS]:
        dispatches.add_row(
            dispatch.dispatch_id,
            dispatch.truck_id,
            dispatch.zone,
            dispatch.state,
            f"{dispatch.stops_done}/{dispatch.stops}" if dispatch.stops else "-",
            f"{dispatch.est_load_kg:.0f} kg" if dispatch.est_load_kg else "-",
            "-" if dispatch.collected_kg is None else f"{dispatch.collected_kg:.1f} kg",
        )
    counts = " -> ".join(f"{state} {n}" for state, n in scene.dispatch_counts().items())
    facilities = Table(expand=True, box=None, pad_edge=False)
    for column in ("facility", "device", "now"):
        facilities.add_column(column)
    for meter in sorted(scene.energy.values(), key=lambda m: (m.site, m.device_id)):
        net = meter.net_wh_since_start()
        soc = "-" if meter.battery_soc_pct is None else f"{meter.battery_soc_pct:.0f} %"
        facilities.add_row(
            f"cafe ({meter.site})",
            meter.device_id,
            f"PV {_kw(meter.pv_power_w)}  load {_kw(meter.load_power_w)}  "
            f"grid {_kw(meter.grid_power_w)}  battery {soc}"
            + ("" if net is None else f"  net {net / 1000:+.1f} kWh since start"),
        )
    sites = sorted({g.site for g in scene.gates.values()})
    for site in sites:
        gates = [g for g in scene.gates.values() if g.site == site]
        inside = sum(g.occupancy or 0 for g in gates)
        entries = sum(g.entries_seen for g in gates)
        facilities.add_row(
            f"art center ({site})",
            f"{len(gates)} gate(s)",
            f"{inside} people inside  {entries} entries since start",
        )
    return [
        Panel(
            bins,
            title=f"bins near full (>= {NEAR_FULL_PCT:.0f} %): {len(full)}"
            + _more(MAX_ROWS, len(full)),
        ),
        Panel(alerts, title=f"alerts firing: {len(firing)}" + _more(MAX_ROWS, len(firing))),
        Panel(dispatches, title=f"dispatches: {counts}"),
        Panel(facilities, title="facilities now"),
    ]


def as_text(renderable: RenderableType, width: int = 120) -> str:
    """The view as plain text (no colours), as written to data/run/view.txt."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()
