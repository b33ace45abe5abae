"""The users' e2e job, here: ci-smoke through the whole pipeline, then `facility-simulator verify`.

The GitHub workflow (.github/workflows/e2e.yml) does this with docker compose; here the same
programs run under `make run`'s supervisor against the real Mosquitto and InfluxDB 1.x the
test harness starts, so the end-to-end logic is proven without a Docker engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_make_run import (
    OUTCOME_TIMEOUT_S,
    REPO,
    START_TIMEOUT_S,
    assert_stopped_cleanly,
    make_run,
    services_ready,
)

VERIFY_TIMEOUT_S = 240


def simulator_has_verify() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "devices.simulator", "verify", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode == 0 and "--scenario" in result.stdout


def test_ci_smoke_scenario_verifies_against_real_servers(
    tmp_path: Path, mosquitto: Any, influxdb1: Any
) -> None:
    if not simulator_has_verify():
        pytest.xfail("facility-simulator has no `verify --scenario` command yet")
    servers = {"MQTT_URL": mosquitto.url, "INFLUX_URL": influxdb1.url, "INFLUX_API_VERSION": "1"}
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
        if "not built yet" in verify.stderr:
            pytest.xfail(f"simulator verify is in progress: {verify.stderr.strip()}")
        assert verify.returncode == 0, f"{verify.stdout}\n{verify.stderr}\n{run.logs()}"
        assert_stopped_cleanly(run, status)
