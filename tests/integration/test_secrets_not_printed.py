"""Issue 11, point 8: a password inside MQTT_URL or INFLUX_URL appears nowhere a program
prints — configuration errors, logs, /healthz, /metrics — for ingest and alerts run as real
processes against an unreachable broker and database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import bound_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret"
PROGRAMS = {"services.ingest": "INGEST", "services.alerts": "ALERTS"}


def _env(tmp_path: Path, program: str, **extra: str) -> dict[str, str]:
    prefix = PROGRAMS[program]
    return {
        **os.environ,
        "MQTT_URL": f"mqtt://dev:{SECRET}@127.0.0.1:1",
        "INFLUX_URL": f"http://admin:{SECRET}@127.0.0.1:1",
        "INFLUX_API_VERSION": "1",
        "LOG_LEVEL": "DEBUG",
        f"{prefix}_HTTP_PORT": "0",
        "HTTP_PORT_FILE": str(tmp_path / "port"),
        "INGEST_SPOOL_DIR": str(tmp_path / "spool"),
        "ALERTS_STATE_DIR": str(tmp_path / "state"),
        "ALERTS_SYNC_TIMEOUT_S": "1",
        **extra,
    }


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize(
    "bad",
    [
        {"MQTT_URL": f"mqtt://dev:{SECRET}@127.0.0.1:notaport"},
        {"INFLUX_URL": f"ftp://admin:{SECRET}@127.0.0.1:1"},
        {"MQTT_URL": f"ws://dev:{SECRET}@127.0.0.1:1", "LOG_LEVEL": "chatty"},
    ],
    ids=["mqtt-bad-port", "influx-bad-scheme", "two-errors"],
)
def test_configuration_errors_name_the_setting_but_not_its_password(
    tmp_path: Path, program: str, bad: dict[str, str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", program],
        cwd=ROOT,
        env=_env(tmp_path, program, **bad),
        capture_output=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert next(iter(bad)).encode() in output  # the error names the variable ...
    assert SECRET.encode() not in output  # ... and never its password


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_running_service_never_prints_or_serves_a_urls_password(
    tmp_path: Path, program: str
) -> None:
    out_path = tmp_path / "output.log"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", program],
            cwd=ROOT,
            env=_env(tmp_path, program),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        port = bound_port(tmp_path / "port", proc)
        # The broker is unreachable: the link says so (naming it, without the password).
        wait_until(lambda: b"not reachable" in out_path.read_bytes(), timeout=30)
        bodies = [
            httpx.get(f"http://127.0.0.1:{port}/{path}", timeout=5).text
            for path in ("healthz", "metrics")
        ]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    output = out_path.read_text(errors="replace")
    assert "dev:***@127.0.0.1:1" in output, output[-2000:]
    for text in [output, *bodies]:
        assert SECRET not in text, text[-2000:]
