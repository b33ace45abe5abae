"""The supervisor's loop: start the plan's children in order, restart the ones that die,
keep data/run/status.json and the view current, stop everything in reverse order."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType

import httpx
from rich.console import Console, Group
from rich.live import Live

from supervisor.child import Child, ChildState
from supervisor.plan import LOOPBACK, Plan
from supervisor.view import Figures, as_text, render, scrape
from supervisor.watch import Watcher, settings_from

CONFIG_ERROR_EXIT = 2
BROKER_START_TIMEOUT_S = 20.0
SERVICE_START_TIMEOUT_S = 60.0
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
TICK_S = 0.5


def healthy(port: int | None) -> bool:
    if not port:
        return False
    try:
        return httpx.get(f"http://{LOOPBACK}:{port}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_listening(host: str, port: int, deadline: float, alive: Callable[[], bool]) -> bool:
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)  # polling a port that is not open yet, bounded by the deadline
    return False


class Supervisor:
    """Starts the plan's children, restarts the ones that die, stops them all in reverse."""

    def __init__(self, plan: Plan, console: Console, live_view: bool) -> None:
        self.plan = plan
        self.console = console
        self.live_view = live_view
        self.stopping = threading.Event()
        self.figures = Figures()
        self.notes: list[str] = []
        self.fatal: str | None = None
        self.started = time.monotonic()
        self.watcher: Watcher | None = None

    def note(self, text: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {text}")
        if not self.live_view:
            self.console.print(self.notes[-1], highlight=False)

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping.is_set():
            self.note(f"{signal.Signals(signum).name}: stopping")
        self.stopping.set()

    def child(self, name: str) -> Child | None:
        return next((c for c in self.plan.children if c.name == name), None)

    def start_all(self) -> bool:
        for child in self.plan.children:
            if self.stopping.is_set():
                return False
            if child.name == "simulator":
                # Devices publish only once ingest and alerts are subscribed: on a fresh broker
                # nothing queues messages for a session that does not exist yet.
                self.wait_healthy([c for c in self.plan.children if c.http_port])
            child.start()
            if child.name == "broker":
                port = self.plan.broker_port or 1883
                deadline = time.monotonic() + BROKER_START_TIMEOUT_S
                if not wait_listening(LOOPBACK, port, deadline, child.alive):
                    self.fatal = "embedded broker did not start: " + " | ".join(child.tail(3))
                    return False
            if child.name == "ingest":
                self.start_watcher(child.env)
        return True

    def start_watcher(self, environ: dict[str, str]) -> None:
        """The view's own subscriber, on the broker the services use (after it is up)."""
        try:
            self.watcher = Watcher(settings_from(environ))
            self.watcher.start()
        except (ValueError, OSError) as exc:
            self.watcher = None
            self.note(f"live view of the city off: {exc}")

    def wait_healthy(self, children: list[Child]) -> None:
        deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
        waiting = list(children)
        while waiting and time.monotonic() < deadline and not self.stopping.is_set():
            waiting = [c for c in waiting if c.exited() is None and not healthy(c.http_port)]
            if waiting:
                time.sleep(0.2)  # polling starting services, bounded by the deadline
        for child in waiting:
            self.note(f"{child.name} not healthy after {SERVICE_START_TIMEOUT_S:.0f} s")

    def check_children(self) -> None:
        now = time.monotonic()
        for child in self.plan.children:
            code = child.exited()
            if child.state is ChildState.RUNNING and code is not None:
                child.last_exit = code
                child.proc = None
                if code == 0 and child.finishes:
                    child.state, child.note = ChildState.FINISHED, "exit 0"
                    self.note(f"{child.name} finished")
                    continue
                if code == CONFIG_ERROR_EXIT:
                    tail = " | ".join(child.tail(2))
                    self.fatal = f"{child.name} rejected its configuration: {tail}"
                    self.stopping.set()
                    return
                delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
                child.state, child.next_start = ChildState.RESTARTING, now + delay
                child.note = f"exit {code}; restart in {delay:.0f} s"
                self.note(f"{child.name} exited with {code}; restarting in {delay:.0f} s")
            elif child.state is ChildState.RESTARTING and now >= child.next_start:
                child.restarts += 1
                child.note = f"last exit {child.last_exit}"
                child.start()

    def write_status(self) -> None:
        """data/run/status.json: ports and figures, for scripts and the e2e test."""
        status = {
            "mqtt_url": self.plan.mqtt_url,
            "sink": self.plan.sink,
            "points_file": str(self.plan.data_dir / "points.lp"),
            "processes": {
                c.name: {
                    "state": c.state,
                    "pid": c.proc.pid if c.proc else None,
                    "restarts": c.restarts,
                    "http_port": c.http_port,
                }
                for c in self.plan.children
            },
            "figures": self.figures.as_dict(),
            "scene": self.watcher.snapshot().as_dict() if self.watcher else None,
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }
        path = self.plan.data_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=2))
        tmp.replace(path)
        # The screen as text: what the live view shows, for a terminal that is not this one
        # (`watch cat data/run/view.txt` over ssh) and for the end-to-end tests.
        view = self.plan.data_dir / "view.txt"
        tmp = view.with_suffix(".tmp")
        tmp.write_text(as_text(self.view()))
        tmp.replace(view)

    def refresh(self) -> None:
        ingest, alerts = self.child("ingest"), self.child("alerts")
        self.figures.update(
            scrape(ingest.http_port if ingest else None),
            scrape(alerts.http_port if alerts else None),
        )
        self.write_status()

    def view(self) -> Group:
        return render(
            self.plan.header,
            [c.row() for c in self.plan.children],
            self.figures,
            self.notes,
            self.watcher.snapshot() if self.watcher else None,
        )

    def run(self, duration_s: float | None) -> int:
        self.plan.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + duration_s if duration_s else None
        last_line = 0.0
        live = (
            Live(self.view(), console=self.console, refresh_per_second=2, transient=False)
            if self.live_view
            else None
        )
        if live is None:
            for line in self.plan.header:
                self.console.print(line, highlight=False)
        try:
            if live is not None:
                live.start()
            if self.start_all():
                while not self.stopping.wait(TICK_S):
                    self.check_children()
                    self.refresh()
                    if live is not None:
                        live.update(self.view())
                    elif time.monotonic() - last_line >= 5.0:
                        last_line = time.monotonic()
                        self.console.print(self.figures.line(), highlight=False)
                        if self.watcher is not None:
                            self.console.print(self.watcher.snapshot().line(), highlight=False)
                    if deadline is not None and time.monotonic() >= deadline:
                        self.note("duration reached: stopping")
                        break
            else:
                self.stopping.set()
            return self.stop_all(live)
        finally:
            if live is not None:
                live.stop()

    def stop_all(self, live: Live | None) -> int:
        """Reverse start order: devices stop first, the broker last, so nothing is cut off."""
        failures = []
        if self.watcher is not None:
            self.watcher.stop()
        for child in reversed(self.plan.children):
            if child.proc is None:
                child.state = ChildState.STOPPED
                continue
            child.state = ChildState.STOPPING
            if live is not None:
                live.update(self.view())
            code = child.stop()
            if code not in (0, -signal.SIGTERM):
                failures.append(f"{child.name} exited with {code}")
            if live is not None:
                live.update(self.view())
        self.refresh()
        self.console.print(f"final: {self.figures.line()}", highlight=False)
        if self.fatal:
            self.console.print(f"run: {self.fatal}", style="bold red", highlight=False)
            return CONFIG_ERROR_EXIT
        if failures:
            self.console.print("run: " + "; ".join(failures), style="red", highlight=False)
            return 1
        self.console.print("run: stopped cleanly", highlight=False)
        return 0
