"""Shared pieces of the alerts integration tests: a one-rule rules file, a webhook receiver,
a real facility-alerts process and a full bin's reading for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from tests.helpers import publish
from tests.unit.alerts.helpers import bin_full_rules

ROOT = Path(__file__).resolve().parents[3]

BIN_FULL_RULES = bin_full_rules('clear: "< 60"')


class WebhookReceiver:
    """A loopback HTTP server recording every POST as (headers, body).

    It answers 500 to the first ``fail_first`` requests, then 200. ``port=0`` picks a free one.
    """

    def __init__(self, port: int = 0, fail_first: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((dict(self.headers), body))
                code = 500 if len(outer.requests) <= outer.fail_first else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(slots=True)
class AlertsRun:
    """How to start a real facility-alerts (``python -m services.alerts``), again and again on
    the same files; it remembers what it started, so ``kill_all`` leaves nothing running."""

    env: dict[str, str]
    port_file: Path
    state: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, capture_stderr: bool = False, preexec_fn: Callable[[], object] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.alerts"],
            cwd=ROOT,
            env=self.env,
            stderr=subprocess.PIPE if capture_stderr else None,
            preexec_fn=preexec_fn,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], sig: int) -> bytes:
        """Sends ``sig`` unless it has ended already; returns its captured stderr, if any."""
        if proc.poll() is None:
            proc.send_signal(sig)
        proc.wait(timeout=30)
        return proc.stderr.read() if proc.stderr else b""

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def alerts_run(tmp_path: Path, broker_url: str, client_id: str, **settings: str) -> AlertsRun:
    """A facility-alerts on ``broker_url`` with the one-rule rules file, its state, port file
    and (absent) secrets under ``tmp_path``, an HTTP port of its own choosing, and no
    MQTT_/ALERTS_/INFLUX_ settings from the caller's environment; ``settings`` add to that."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(BIN_FULL_RULES)
    run = AlertsRun({}, tmp_path / "alerts.port", tmp_path / "state")
    prefixes = ("MQTT_", "ALERTS_", "INFLUX_")
    run.env.update({k: v for k, v in os.environ.items() if not k.startswith(prefixes)})
    run.env.update(
        MQTT_URL=broker_url,
        MQTT_CLIENT_ID=client_id,
        ALERTS_HTTP_PORT="0",
        HTTP_PORT_FILE=str(run.port_file),
        ALERTS_RULES_FILE=str(rules),
        ALERTS_STATE_DIR=str(run.state),
        SECRETS_DIR=str(tmp_path / "no-secrets"),
    )
    run.env.update(settings)
    return run


def publish_full_bin(broker_url: str, device: str) -> None:
    """A reading of ``device`` (an ewaste bin) at 95 % full, stamped now: ``bin_full`` fires."""
    reading = {"ts": int(time.time() * 1000), "fill_pct": 95.0, "weight_kg": 30.0}
    publish(broker_url, f"facility/ewaste/ewaste_bin/{device}/telemetry", json.dumps(reading))


def metric(port: int, name: str) -> float | None:
    """The first sample of ``name`` (a bare name, or one with its labels) on the /metrics of
    the facility-alerts on ``port``, or None when it has none."""
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def health(port: int) -> dict[str, Any]:
    """The /healthz JSON of the facility-alerts on ``port``."""
    found: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
    return found
