"""`make run` (facility-run, i.e. python -m supervisor): the supervised local system, end to end.

The supervisor is started as a real background process (embedded amqtt broker, ingest with
the file sink, alerts, simulator) exactly as `make run` starts it, in a tmp data dir. The
tests wait, with deadlines, for stored readings and an alert, then stop it with SIGINT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from tests.servers import free_ports

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
OUTCOME_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 90.0
# Variables that would point the run at other servers or change the scenario under test.
_SCRUB = ("MQTT_", "INFLUX_", "INGEST_", "ALERTS_", "SIMULATOR_", "LOG_", "DEVICES_FILE")


@dataclass
class Run:
    proc: subprocess.Popen[str]
    data_dir: Path

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.data_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data

    def wait_until(
        self, what: str, condition: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"run exited early: {self.output_tail()}"
            status = self.status()
            if status and condition(status):
                return status
            time.sleep(0.5)  # the supervisor rewrites status.json every 0.5 s
        raise AssertionError(
            f"timed out waiting for {what}; last status {self.status()}; {self.logs()}"
        )

    def stored_lines(self) -> list[str]:
        path = self.data_dir / "points.lp"
        return path.read_text().splitlines() if path.exists() else []

    def logs(self) -> str:
        parts = []
        for log in sorted((self.data_dir / "logs").glob("*.log")):
            parts.append(
                f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            )
        return "\n".join(parts)

    def output_tail(self) -> str:
        return self.logs()

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=STOP_TIMEOUT_S)
        return self.proc.returncode, out


@contextmanager
def make_run(tmp_path: Path, *args: str, servers: dict[str, str] | None = None) -> Iterator[Run]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(servers or {})
    env["PYTHONUNBUFFERED"] = "1"
    data_dir = tmp_path / "run"
    if "MQTT_URL" not in env:  # a free port, not 1883: a developer's broker may be running
        args = (*args, "--mqtt-port", str(free_ports()[0]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "--plain", "--data-dir", str(data_dir), "--duration", "600", *args],
        cwd=tmp_path,  # not the repo: no stray .env; modules come from PYTHONPATH below
        env={**env, "PYTHONPATH": str(REPO), "DEVICES_FILE": str(REPO / "config" / "devices.yaml"),
             "ALERTS_RULES_FILE": str(REPO / "config" / "rules.yaml"),
             "SIMULATOR_SCENARIO_DIR": str(REPO / "config" / "scenarios")},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    run = Run(proc, data_dir)
    try:
        yield run
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        # Children have their own sessions; make sure none outlives the test.
        for info in run.status().get("processes", {}).values():
            if info.get("pid") and psutil.pid_exists(info["pid"]):
                psutil.Process(info["pid"]).kill()


def processes_running(status: dict[str, Any], names: tuple[str, ...]) -> bool:
    procs = status.get("processes", {})
    return all(procs.get(n, {}).get("state") == "running" for n in names)


def services_ready(status: dict[str, Any]) -> bool:
    if not processes_running(status, tuple(status.get("processes", {})) or ("ingest",)):
        return False
    for name in ("ingest", "alerts"):
        port = status["processes"][name]["http_port"]
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        except httpx.HTTPError:
            return False
        if health.status_code != 200:
            return False
    return True


def assert_stopped_cleanly(run: Run, status: dict[str, Any]) -> None:
    code, out = run.interrupt()
    assert code == 0, out
    assert "stopped cleanly" in out
    for name, info in status["processes"].items():
        pid = info.get("pid")
        if pid:
            assert (
                not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            ), name
    final = run.status()["processes"]
    assert all(info["state"] == "stopped" for info in final.values()), final


def publish_hot_bin(mqtt_url: str, bin_id: str = "bin-001") -> None:
    """Three readings of a bin at 70 °C over two minutes of event time: bin_fire_risk fires."""
    parts = urlsplit(mqtt_url)
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        now_ms = int(time.time() * 1000)
        for seq, age_s in enumerate((150, 90, 30)):
            payload = {
                "ts": now_ms - age_s * 1000,
                "seq": seq,
                "weight_kg": 40.0,
                "fill_pct": 20.0,
                "temperature_c": 70.0,
            }
            info = client.publish(
                f"facility/ewaste/ewaste_bin/{bin_id}/telemetry", json.dumps(payload), qos=1
            )
            info.wait_for_publish(timeout=30)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_run_stores_readings_raises_an_alert_and_stops_on_sigint(tmp_path: Path) -> None:
    """The supervisor's wiring (broker, ingest file sink, alerts), fed by a known device."""
    with make_run(tmp_path, "--scenario", "none") as run:
        status = run.wait_until("broker, ingest and alerts up", services_ready, START_TIMEOUT_S)
        assert status["sink"] == "file"
        publish_hot_bin(status["mqtt_url"])
        status = run.wait_until(
            "3 stored readings and an alert",
            lambda s: s["figures"]["stored"] >= 3 and s["figures"]["alerts_firing"] >= 1,
            OUTCOME_TIMEOUT_S,
        )
        lines = run.stored_lines()
        assert len(lines) >= 3
        assert all(line.startswith("ewaste_bin,") for line in lines)
        assert "temperature_c=70" in lines[0]
        assert_stopped_cleanly(run, status)


def test_demo_scenario_produces_readings_and_alerts(tmp_path: Path) -> None:
    """`make run` as a user runs it: the simulator's demo scenario, a day in a few minutes."""
    with make_run(tmp_path, "--scenario", "demo", "--speed", "1440") as run:
        run.wait_until("all processes up", services_ready, START_TIMEOUT_S)
        status = run.wait_until(
            "stored readings and an alert from the demo scenario",
            lambda s: s["figures"]["stored"] > 0 and s["figures"]["alert_transitions"] >= 1,
            OUTCOME_TIMEOUT_S,
        )
        assert run.stored_lines()
        assert processes_running(status, ("broker", "ingest", "alerts"))
        assert status["processes"]["simulator"]["state"] in ("running", "finished")
        assert all(p["restarts"] == 0 for p in status["processes"].values()), status
        assert_stopped_cleanly(run, status)


def test_run_uses_the_servers_named_by_mqtt_url_and_influx_url(
    tmp_path: Path, mosquitto: Any, influxdb1: Any
) -> None:
    """With MQTT_URL/INFLUX_URL set: no embedded broker, readings and alerts go to InfluxDB."""
    servers = {"MQTT_URL": mosquitto.url, "INFLUX_URL": influxdb1.url, "INFLUX_API_VERSION": "1"}
    with make_run(tmp_path, "--scenario", "none", servers=servers) as run:
        status = run.wait_until("ingest and alerts up", services_ready, START_TIMEOUT_S)
        assert "broker" not in status["processes"]
        assert status["sink"] == "influx"
        assert status["mqtt_url"] == mosquitto.url
        publish_hot_bin(mosquitto.url, "bin-002")
        status = run.wait_until(
            "3 readings stored in InfluxDB and an alert",
            lambda s: s["figures"]["stored"] >= 3 and s["figures"]["alerts_firing"] >= 1,
            OUTCOME_TIMEOUT_S,
        )
        rows = influxdb1.query(
            "SELECT temperature_c FROM ewaste_bin WHERE device_id = 'bin-002'", db="facility"
        )
        assert [row["temperature_c"] for row in rows] == [70.0, 70.0, 70.0]
        assert not run.stored_lines()  # nothing went to the file sink
        assert_stopped_cleanly(run, status)


def test_live_view_shows_bins_alerts_dispatches_and_facilities(
    tmp_path: Path, mosquitto: Any
) -> None:
    """The console's city view, drawn from what the real simulator and alerts publish on a real
    Mosquitto: the demo's full bins fire bin_full, a truck is planned, drives and empties them;
    the cafe's meter and the art center's gates show their latest figures. At the demo's own
    speed a truck's run lasts seconds, so the 0.5 s refresh sees the alert before it resolves."""
    servers = {"MQTT_URL": mosquitto.url}
    with make_run(tmp_path, "--scenario", "demo", servers=servers) as run:
        run.wait_until("all processes up", services_ready, START_TIMEOUT_S)
        seen: dict[str, str] = {}

        def shown(status: dict[str, Any]) -> bool:
            text = (run.data_dir / "view.txt").read_text()
            lines = [line.strip("│ ") for line in text.splitlines()]  # inside the panel borders
            if any("bin_full" in line and "ewaste" in line for line in lines):
                seen.setdefault("alert", text)
            if any("completed" in line and line.endswith(" kg") for line in lines):
                seen.setdefault("collected", text)
            return len(seen) == 2 and "cafe (nzc)" in text and "people inside" in text

        status = run.wait_until("the city in the live view", shown, OUTCOME_TIMEOUT_S)
        alert_line = next(line for line in seen["alert"].splitlines() if "bin_full" in line)
        # rule, severity, site, device, value (a fill of 90 % or more), threshold
        rule, severity, site, device, value, threshold = alert_line.strip("│ ").split()
        assert (rule, severity, site, threshold) == ("bin_full", "warning", "ewaste", "90")
        assert device.startswith("bin-") and float(value) >= 90
        assert "bins near full (>= 80 %)" in seen["alert"]
        final = (run.data_dir / "view.txt").read_text()
        assert "art center (uac)" in final and "PV " in final and "battery" in final
        scene = status["scene"]
        assert any(d["state"] == "completed" and d["collected_kg"] for d in scene["dispatches"])
        assert scene["messages"] > 0
        assert_stopped_cleanly(run, status)
