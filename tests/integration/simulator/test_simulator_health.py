"""Issue 13 point 8: the simulator's container health means something.

``facility-simulator healthcheck`` (the compose healthcheck) passes while a scenario runs with
its broker connections up, fails once the broker is gone, recovers with it, and fails after the run ended - the
old check (a process named facility-simulator exists) passed in every one of these states.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devices.simulator.health import judge
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[3]
START_S = 60.0
STOP_S = 30.0


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devices.simulator", "healthcheck"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_simulator_healthcheck_follows_the_broker_connection_and_the_run(
    tmp_path: Path, mosquitto: Any
) -> None:
    health = tmp_path / "run" / "simulator.health"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "SIMULATOR_"))}
    env = {
        **base,
        "MQTT_URL": mosquitto.url,
        "SIMULATOR_HEALTH_FILE": str(health),
        "SIMULATOR_PROGRESS": "off",
        "LOG_LEVEL": "WARNING",
    }
    assert healthcheck(env).returncode == 1  # nothing running yet
    log = (tmp_path / "simulator.log").open("wb")
    # In real time: the run lasts far longer than the test and is stopped by it.
    sim = subprocess.Popen(
        [sys.executable, "-m", "devices.simulator", "--scenario", "demo", "--speed", "1",
         "--duration", "1h"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: judge(health, _now())[0] or sim.poll() is not None, START_S)
        assert sim.poll() is None, (tmp_path / "simulator.log").read_text()
        up = healthcheck(env)
        assert up.returncode == 0, up.stdout
        assert json.loads(health.read_text())["connections"] >= 40  # one per device

        mosquitto.stop()
        wait_until(lambda: not judge(health, _now())[0], STOP_S)
        down = healthcheck(env)
        assert down.returncode == 1
        assert "broker connections up" in down.stdout

        mosquitto.start()  # same port: the links reconnect and health comes back
        wait_until(lambda: judge(health, _now())[0], START_S)
        assert healthcheck(env).returncode == 0

        sim.send_signal(signal.SIGTERM)
        sim.wait(STOP_S)
        gone = healthcheck(env)
        assert gone.returncode == 1 and "not running" in gone.stdout
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(10)
        log.close()


def _now() -> float:
    return time.time()
