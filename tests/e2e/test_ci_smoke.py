"""The users' e2e job, here: ci-smoke through the whole pipeline, then `facility-simulator verify`.

The GitHub workflow (.github/workflows/e2e.yml) does this with docker compose; here the same
programs run under `make run`'s supervisor against the real Mosquitto and InfluxDB 1.x the
test harness starts, so the end-to-end logic is proven without a Docker engine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.e2e.test_make_run import (
    OUTCOME_TIMEOUT_S,
    REPO,
    START_TIMEOUT_S,
    assert_stopped_cleanly,
    make_run,
    services_ready,
)
from tests.helpers import bound_port

VERIFY_TIMEOUT_S = 240


def test_ci_smoke_scenario_verifies_against_real_servers(
    tmp_path: Path, mosquitto: Any, influxdb1: Any
) -> None:
    servers = {
        "MQTT_URL": mosquitto.url,
        "INFLUX_URL": influxdb1.url,
        "INFLUX_API_VERSION": "1",
        # Run and verify place the re-anchored window against the same instant.
        "SIMULATOR_ANCHOR_AT": datetime.now(UTC).isoformat(),
    }
    with make_run(tmp_path, "--scenario", "ci-smoke", servers=servers) as run:
        run.wait_until("services up", services_ready, START_TIMEOUT_S)
        status = run.wait_until(
            "the ci-smoke scenario to finish",
            lambda s: s["processes"]["simulator"]["state"] == "finished",
            OUTCOME_TIMEOUT_S,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUX_"))}
        verify = subprocess.run(
            [sys.executable, "-m", "devices.simulator", "verify", "--scenario", "ci-smoke"],
            cwd=REPO,
            env={**env, **servers, "MQTT_CLIENT_ID": "facility-simulator-verify"},
            capture_output=True,
            text=True,
            timeout=VERIFY_TIMEOUT_S,
            check=False,
        )
        assert verify.returncode == 0, f"{verify.stdout}\n{verify.stderr}\n{run.logs()}"
        assert_stopped_cleanly(run, status)


# -- the same job with the services started directly (no supervisor) ---------------------------

HEALTH_TIMEOUT_S = 60.0
SCENARIO_TIMEOUT_S = 240.0
SERVICE_STOP_TIMEOUT_S = 30.0


class Service:
    """A program under test as a subprocess, its output in a log file for failure messages."""

    def __init__(self, name: str, module: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return f"--- {self.name} log ---\n" + self.log_path.read_text(errors="replace")[-6000:]

    def terminate(self) -> int | None:
        """SIGTERM and wait (bounded); a process that does not stop is killed, None returned."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(SERVICE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None
        finally:
            self._log.close()


def wait_healthy(service: Service, port: int, logs: str) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            pytest.fail(f"{service.name} exited {service.proc.returncode} at start\n{logs}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)  # polling interval of a bounded wait, not a synchronisation sleep
    pytest.fail(f"{service.name} /healthz not 200 within {HEALTH_TIMEOUT_S} s: {last}\n{logs}")


@contextlib.contextmanager
def running(services: list[Service]) -> Iterator[None]:
    try:
        yield
    finally:
        for service in services:
            if service.proc.poll() is None:
                service.proc.kill()
                service.proc.wait(10)


def test_ci_smoke_with_ingest_and_alerts_passes_verify(
    tmp_path: Path, mosquitto: Any, influxdb1: Any
) -> None:
    play_and_verify(tmp_path, mosquitto, influxdb1)


def test_ci_smoke_dated_two_years_ago_passes_against_a_52_week_database(
    tmp_path: Path, mosquitto: Any, influxdb1: Any
) -> None:
    """Issue 13 point 1: a scenario date older than the retention made InfluxDB refuse every
    reading (ingest dead-lettered them all, verify failed); re-anchored, it plays last week."""
    text = (REPO / "config" / "scenarios" / "ci-smoke.yaml").read_text()
    dated = 'start: "2025-06-13T12:00:00+09:00"'
    assert dated in text
    # 52 weeks before ci-smoke's own date (same weekday and local time): over two years ago.
    old = tmp_path / "scenarios" / "ci-smoke.yaml"
    old.parent.mkdir()
    old.write_text(text.replace(dated, 'start: "2024-06-14T12:00:00+09:00"'))
    assert datetime.now(UTC) - datetime(2024, 6, 14, 3, tzinfo=UTC) > timedelta(days=730)
    play_and_verify(
        tmp_path,
        mosquitto,
        influxdb1,
        # The database ingest creates keeps 52 weeks, like the compose stack's bucket.
        {"INGEST_RETENTION": "52w", "SIMULATOR_SCENARIO_DIR": str(old.parent)},
    )


def play_and_verify(
    tmp_path: Path, mosquitto: Any, influxdb1: Any, extra: dict[str, str] | None = None
) -> None:
    """ingest + alerts started directly, ci-smoke played, then verify must pass."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUX_"))}
    env = {
        **base,
        "MQTT_URL": mosquitto.url,
        "INFLUX_URL": influxdb1.url,
        "INFLUX_API_VERSION": "1",
        "INGEST_SPOOL_DIR": str(tmp_path / "spool"),
        "INGEST_HTTP_HOST": "127.0.0.1",
        "INGEST_HTTP_PORT": "0",
        "ALERTS_HTTP_HOST": "127.0.0.1",
        "ALERTS_HTTP_PORT": "0",
        "LOG_FORMAT": "console",
        "SECRETS_DIR": str(tmp_path / "no-secrets"),
        **(extra or {}),
    }
    port_files = {name: tmp_path / f"{name}.port" for name in ("ingest", "alerts")}
    ingest = Service(
        "ingest", "services.ingest", env | {"HTTP_PORT_FILE": str(port_files["ingest"])}, tmp_path
    )
    alerts = Service(
        "alerts", "services.alerts", env | {"HTTP_PORT_FILE": str(port_files["alerts"])}, tmp_path
    )
    summary = tmp_path / "summary.json"

    def logs() -> str:
        return f"{ingest.log()}\n{alerts.log()}"

    with running([ingest, alerts]):
        ingest_port = bound_port(port_files["ingest"], ingest.proc, HEALTH_TIMEOUT_S)
        alerts_port = bound_port(port_files["alerts"], alerts.proc, HEALTH_TIMEOUT_S)
        wait_healthy(ingest, ingest_port, logs())
        wait_healthy(alerts, alerts_port, logs())
        sim = subprocess.run(
            [sys.executable, "-m", "devices.simulator", "--scenario", "ci-smoke",
             "--summary-file", str(summary), "--no-progress"],
            cwd=REPO, env={**env, "LOG_LEVEL": "WARNING"}, capture_output=True, text=True,
            timeout=SCENARIO_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert sim.returncode == 0, f"simulator: {sim.stdout}\n{sim.stderr}\n{logs()}"
        assert summary.is_file()
        verify = subprocess.run(
            [sys.executable, "-m", "devices.simulator", "verify", "--scenario", "ci-smoke",
             "--summary-file", str(summary), "--timeout", "120",
             "--ingest-metrics-url", f"http://127.0.0.1:{ingest_port}/metrics"],
            cwd=REPO, env=env, capture_output=True, text=True,
            timeout=VERIFY_TIMEOUT_S, check=False,
        )  # fmt: skip
        print(verify.stdout)
        assert verify.returncode == 0, f"{verify.stdout}\n{verify.stderr}\n{logs()}"
        assert "FAIL" not in verify.stdout
        assert "PASS    dead-lettered" in verify.stdout, verify.stdout
        codes = {service.name: service.terminate() for service in (ingest, alerts)}
        assert codes == {"ingest": 0, "alerts": 0}, f"exit codes {codes}\n{logs()}"
