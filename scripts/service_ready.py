"""Waiting for our own services, started as subprocesses by benchmarks and evaluations."""

from __future__ import annotations

import json
import time
import urllib.request


def wait_alerts_ready(port: int, timeout: float = 30) -> None:
    """Return once facility-alerts on ``port`` has restored its state and judges telemetry."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if json.loads(r.read()).get("state_restored"):
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    raise RuntimeError("facility-alerts did not become ready")
