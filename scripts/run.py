"""`make run`: the whole system on one machine, supervised, with a live terminal view.

Starts, in order: an embedded MQTT broker (amqtt, MQTT 3.1.1) unless ``MQTT_URL`` is set, the
ingest service (InfluxDB when ``INFLUX_URL`` is set and answers, else the line-protocol file
sink under ``data/run``), the alerts service and the simulator's ``demo`` scenario, sped up so
a day passes in minutes. A child that dies is restarted with backoff; one that rejects its
configuration (exit 2) stops the run. Ctrl-C (or SIGTERM) stops everything in reverse order.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx
from rich.console import Console, Group
from rich.live import Live

from scripts.run_view import ChildRow, Figures, render, scrape

LOOPBACK = "127.0.0.1"
CONFIG_ERROR_EXIT = 2
STOP_TIMEOUT_S = 20.0
BROKER_START_TIMEOUT_S = 20.0
SERVICE_START_TIMEOUT_S = 60.0
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
TICK_S = 0.5
_PR_SET_PDEATHSIG = 1


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
    state: str = "stopped"
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
                preexec_fn=_die_with_parent,
            )
        self.state = "running"

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

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
        self.state = "stopped"
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


def _die_with_parent() -> None:
    """Linux: the kernel SIGTERMs the child if the supervisor dies without cleaning up."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _alive(child: Child) -> bool:
    return child.exited() is None


def free_port(preferred: int = 0) -> int:
    """``preferred`` if it is free on loopback, else any free port."""
    for candidate in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port")


def influx_reachable(url: str, timeout: float = 3.0) -> bool:
    """InfluxDB 2.x answers /health, 1.x answers /ping (204)."""
    for path in ("/health", "/ping"):
        try:
            if httpx.get(url.rstrip("/") + path, timeout=timeout).status_code < 300:
                return True
        except httpx.HTTPError:
            continue
    return False


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


@dataclass
class Plan:
    """What this run will start and where it points them (decided once, shown in the header)."""

    mqtt_url: str
    embedded_broker: bool
    broker_port: int | None
    sink: str
    data_dir: Path
    children: list[Child] = field(default_factory=list)
    header: list[str] = field(default_factory=list)


def make_plan(args: argparse.Namespace, environ: dict[str, str]) -> Plan:
    data_dir = Path(args.data_dir).resolve()
    logs = data_dir / "logs"
    python = sys.executable
    base = dict(environ)
    base.setdefault("LOG_LEVEL", "INFO")
    base["LOG_FORMAT"] = "console"
    base["PYTHONUNBUFFERED"] = "1"

    if environ.get("MQTT_URL"):
        mqtt_url, embedded, broker_port = environ["MQTT_URL"], False, None
    else:
        broker_port = args.mqtt_port if args.mqtt_port else free_port(1883)
        mqtt_url, embedded = f"mqtt://{LOOPBACK}:{broker_port}", True
        base["MQTT_URL"] = mqtt_url
        base["MQTT_PROTOCOL"] = "3.1.1"  # amqtt speaks MQTT 3.1.1 only

    influx_url = environ.get("INFLUX_URL")
    use_influx = bool(influx_url) and influx_reachable(str(influx_url))
    plan = Plan(mqtt_url, embedded, broker_port, "influx" if use_influx else "file", data_dir)
    parts = urlsplit(mqtt_url)  # shown without credentials
    where = f"{parts.scheme}://{parts.hostname}:{parts.port or 1883}"
    plan.header.append(f"broker   {'embedded amqtt (MQTT 3.1.1) ' if embedded else ''}{where}")
    if use_influx:
        plan.header.append(
            f"storage  InfluxDB {influx_url} (bucket {environ.get('INFLUX_BUCKET', 'facility')})"
        )
    else:
        reason = f"{influx_url} does not answer" if influx_url else "INFLUX_URL not set"
        plan.header.append(f"storage  line-protocol file {data_dir / 'points.lp'} ({reason})")
    plan.header.append(f"logs     {logs}/<process>.log")

    if embedded:
        plan.children.append(
            Child(
                "broker",
                [
                    python,
                    "-m",
                    "scripts.embedded_broker",
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(broker_port),
                ],
                dict(base),
                logs / "broker.log",
            )
        )
    ingest_port = free_port()
    ingest_env = {
        **base,
        "INGEST_HTTP_HOST": LOOPBACK,
        "INGEST_HTTP_PORT": str(ingest_port),
        "INGEST_SPOOL_DIR": str(data_dir / "spool"),
    }
    if use_influx:
        ingest_env["INGEST_SINK"] = "influx"
    else:
        ingest_env |= {"INGEST_SINK": "file", "INGEST_FILE_PATH": str(data_dir / "points.lp")}
    plan.children.append(
        Child(
            "ingest",
            [python, "-m", "services.ingest"],
            ingest_env,
            logs / "ingest.log",
            ingest_port,
        )
    )
    alerts_port = free_port()
    alerts_env = {
        **base,
        "ALERTS_HTTP_HOST": LOOPBACK,
        "ALERTS_HTTP_PORT": str(alerts_port),
        "ALERTS_INFLUX_ENABLED": "true" if use_influx else "false",
    }
    plan.children.append(
        Child(
            "alerts",
            [python, "-m", "services.alerts"],
            alerts_env,
            logs / "alerts.log",
            alerts_port,
        )
    )
    if args.scenario != "none":
        simulator_env = {**base, "SIMULATOR_PROGRESS": "off"}  # the view shows progress
        argv = [python, "-m", "devices.simulator", "--scenario", args.scenario]
        if args.speed is not None:
            argv += ["--speed", f"{args.speed:g}"]
        plan.children.append(
            Child(
                "simulator",
                argv,
                simulator_env,
                logs / "simulator.log",
                finishes=True,
            )
        )
        pace = (
            f"x{args.speed:g} (a day in {86400 / args.speed / 60:.1f} min)"
            if args.speed
            else "at the scenario's own speed"
        )
        plan.header.append(f"devices  simulator scenario '{args.scenario}' {pace}")
    return plan


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
                if not wait_listening(LOOPBACK, port, deadline, partial(_alive, child)):
                    self.fatal = "embedded broker did not start: " + " | ".join(child.tail(3))
                    return False
        return True

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
            if child.state == "running" and code is not None:
                child.last_exit = code
                child.proc = None
                if code == 0 and child.finishes:
                    child.state, child.note = "finished", "exit 0"
                    self.note(f"{child.name} finished")
                    continue
                if code == CONFIG_ERROR_EXIT:
                    tail = " | ".join(child.tail(2))
                    self.fatal = f"{child.name} rejected its configuration: {tail}"
                    self.stopping.set()
                    return
                delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
                child.state, child.next_start = "restarting", now + delay
                child.note = f"exit {code}; restart in {delay:.0f} s"
                self.note(f"{child.name} exited with {code}; restarting in {delay:.0f} s")
            elif child.state == "restarting" and now >= child.next_start:
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
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }
        path = self.plan.data_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=2))
        tmp.replace(path)

    def refresh(self) -> None:
        ingest, alerts = self.child("ingest"), self.child("alerts")
        self.figures.update(
            scrape(ingest.http_port if ingest else None),
            scrape(alerts.http_port if alerts else None),
        )
        self.write_status()

    def view(self) -> Group:
        return render(
            self.plan.header, [c.row() for c in self.plan.children], self.figures, self.notes
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
        for child in reversed(self.plan.children):
            if child.proc is None:
                child.state = "stopped"
                continue
            child.state = "stopping"
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Environment: MQTT_URL (use that broker, MQTT v5 unless MQTT_PROTOCOL=3.1.1), "
        "INFLUX_URL + INFLUX_TOKEN/INFLUX_API_VERSION (store there when it answers), and every "
        "other variable of the programs (see .env.example and docs/operations.md).",
    )
    parser.add_argument(
        "--scenario", default="demo", help="simulator scenario, or 'none' (default demo)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per real second (default: the scenario's; demo: 600, "
        "a day in 4 minutes)",
    )
    parser.add_argument(
        "--data-dir", default="data/run", help="file sink, spool, logs (default data/run)"
    )
    parser.add_argument(
        "--mqtt-port", type=int, default=0, help="embedded broker port (default 1883 if free)"
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="log lines instead of the live view (default when not a terminal)",
    )
    args = parser.parse_args(argv)
    if args.speed is not None and args.speed <= 0:
        parser.error("--speed must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200, soft_wrap=True)  # log lines, not a reflowed screen
    plan = make_plan(args, dict(os.environ))
    supervisor = Supervisor(plan, console, live_view=console.is_terminal and not args.plain)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    return supervisor.run(args.duration)


if __name__ == "__main__":
    sys.exit(main())
