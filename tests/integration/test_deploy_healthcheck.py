"""Issue 13 point 4: the broker's container healthcheck keeps the log quiet.

deploy/mosquitto/healthcheck.sh run against the real broker with the deploy config: the first
check logs in and publishes (three log lines), checks within MOSQUITTO_HEALTH_FULL_EVERY_S only
look for the open listener and log nothing, and a stopped broker fails the check at once.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.integration.deploy_broker import DEPLOY, DeployBroker, deploy_env


def healthcheck(broker: DeployBroker, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(DEPLOY / "healthcheck.sh")],
        env={
            **os.environ,
            "MOSQUITTO_RUN_DIR": str(broker.run_dir),
            "MOSQUITTO_HEALTH_PORT": str(broker.port),
            **env,
        },
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_healthchecks_log_in_once_per_period_and_fail_when_the_broker_is_gone(
    tmp_path: Path,
) -> None:
    broker = DeployBroker(tmp_path, deploy_env())
    broker.start()
    try:
        for _ in range(5):
            result = healthcheck(broker)
            assert result.returncode == 0, result.stderr
        forced = healthcheck(broker, MOSQUITTO_HEALTH_FULL_EVERY_S="0")  # a full check again
        assert forced.returncode == 0, forced.stderr
    finally:
        broker.stop()
    log = broker.log.read_text()
    # mosquitto writes its log when it stops; two logins: the first check and the forced one.
    assert log.count("as svc.health") == 2, log[-3000:]
    down = healthcheck(broker)
    assert down.returncode == 1
    assert "nothing listens on port" in down.stderr
    down_full = healthcheck(broker, MOSQUITTO_HEALTH_FULL_EVERY_S="0")
    assert down_full.returncode != 0
