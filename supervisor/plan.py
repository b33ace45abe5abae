"""What one `make run` starts and where it points each program, decided once at start-up."""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from common.redact import redact_url
from supervisor.child import Child

LOOPBACK = "127.0.0.1"


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
    parts = urlsplit(mqtt_url)
    where = redact_url(f"{parts.scheme}://{parts.netloc}")
    plan.header.append(f"broker   {'embedded amqtt (MQTT 3.1.1) ' if embedded else ''}{where}")
    if use_influx:
        plan.header.append(
            f"storage  InfluxDB {redact_url(str(influx_url))} "
            f"(bucket {environ.get('INFLUX_BUCKET', 'facility')})"
        )
    else:
        reason = f"{redact_url(influx_url)} does not answer" if influx_url else "INFLUX_URL not set"
        plan.header.append(f"storage  line-protocol file {data_dir / 'points.lp'} ({reason})")
    plan.header.append(f"logs     {logs}/<process>.log")

    if embedded:
        plan.children.append(
            Child(
                "broker",
                [
                    python,
                    "-m",
                    "supervisor.broker",
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
