"""The facility-alerts program as a process: --help, a bad setting exits 2 naming it,
/healthz answers, SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import bound_port, publish, wait_until
from tests.servers import MosquittoServer

ROOT = Path(__file__).resolve().parents[3]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "ALERTS_", "INFLUX_"))}
    env.update(extra)
    return env


def test_help_and_bad_rules_file_exit_codes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.alerts", "--help"], cwd=ROOT, capture_output=True
    )
    assert done.returncode == 0 and b"facility-alerts" in done.stdout
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - name: x\n    type: threshold\n    field: f\n    when: 'big'\n")
    done = subprocess.run(
        [sys.executable, "-m", "services.alerts"],
        cwd=ROOT,
        capture_output=True,
        env=_env(ALERTS_RULES_FILE=str(bad)),
        timeout=60,
    )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "ALERTS_RULES_FILE" in err and "line 5" in err and "rule 'x'" in err


def test_serves_healthz_and_stops_cleanly_on_sigterm(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    port_file = tmp_path / "alerts.port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.alerts"],
        cwd=ROOT,
        env=_env(
            MQTT_URL=mosquitto.url,
            ALERTS_HTTP_PORT="0",
            HTTP_PORT_FILE=str(port_file),
            ALERTS_INFLUX_ENABLED="false",
            LOG_FORMAT="json",
        ),
        stderr=subprocess.PIPE,
    )
    try:
        port = bound_port(port_file, proc)
        health: dict[str, object] = {}

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health.update(json.loads(r.read()))
                    return r.status == 200 and health.get("state_restored") is True
            except OSError:
                return False

        wait_until(healthy, timeout=30)
        # /metrics counts what the program judged: one valid reading, one broken one.
        topic = "facility/ewaste/ewaste_bin/bin-001/telemetry"
        reading = {"ts": int(time.time() * 1000), "fill_pct": 10.0, "weight_kg": 30.0}
        publish(mosquitto.url, topic, json.dumps(reading))
        publish(mosquitto.url, topic, "{not json")
        judged = (
            b'alerts_messages_total{outcome="accepted"} 1.0',
            b'alerts_messages_total{outcome="rejected"} 1.0',
        )

        def counted() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read()
            return all(line in text for line in judged)

        wait_until(counted, timeout=20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert b'"stopped"' in (proc.stderr.read() if proc.stderr else b"")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
