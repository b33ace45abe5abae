"""The real ingest and alerts services work under the compose broker's ACL, as their users.

Each runs as a subprocess with the credentials docker-compose.yml gives it (svc.ingest,
svc.alerts, MQTT v5) against the real mosquitto running deploy/mosquitto's config; a device
publishes with its own credentials. If the ACL denied a subscription or publish a service
needs, the readings would not be stored or the alert would never reach the operator.
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
from pathlib import Path

import httpx

from tests.helpers import bound_port, publish, wait_until
from tests.integration.bridge_support import (
    SHELLY_SOURCE,
    BridgeProcess,
    shelly_status,
    write_sources,
)
from tests.integration.deploy_broker import (
    PASSWORDS,
    Client,
    DeployBroker,
    client,
    deploy_env,
    running_broker,
)
from tests.integration.ingest_support import labelled
from tests.servers import MosquittoServer
from tests.unit.test_compose import service_environment, services

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0


@contextmanager
def service(module: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MQTT_", "INFLUX_", "INGEST_", "ALERTS_"))
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=REPO,
            env={**base, "LOG_FORMAT": "console", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def wait_healthy(env: dict[str, str], proc: subprocess.Popen[bytes], log: Path) -> None:
    port = bound_port(Path(env["HTTP_PORT_FILE"]), proc)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a starting service, bounded by the deadline
    raise AssertionError(f"not healthy: {log.read_text()[-3000:]}")


def service_env(broker: DeployBroker, user: str, tmp: Path) -> dict[str, str]:
    program = user.removeprefix("svc.")
    # The simulator has a listener of its own (per-device client ids); everyone else 1883's.
    port = broker.simulator_port if user == "svc.simulator" else broker.port
    return {
        "MQTT_URL": f"mqtt://127.0.0.1:{port}",
        "MQTT_USERNAME": user,
        "MQTT_PASSWORD": PASSWORDS[user],
        "MQTT_CLIENT_ID": f"facility-{program}",
        "DEVICES_FILE": str(REPO / "config" / "devices.yaml"),
        f"{program.upper()}_HTTP_PORT": "0",
        "HTTP_PORT_FILE": str(tmp / f"{program}.port"),
    }


def test_ingest_and_alerts_do_their_jobs_under_the_deploy_acl(tmp_path: Path) -> None:
    with running_broker(tmp_path / "broker") as broker:
        ingest_env = service_env(broker, "svc.ingest", tmp_path) | {
            "INGEST_SINK": "file",
            "INGEST_FILE_PATH": str(tmp_path / "points.lp"),
            "INGEST_SPOOL_DIR": str(tmp_path / "spool"),
        }
        alerts_env = service_env(broker, "svc.alerts", tmp_path) | {
            "ALERTS_INFLUX_ENABLED": "false",
            "ALERTS_RULES_FILE": str(REPO / "config" / "rules.yaml"),
        }
        with (
            service("services.ingest", ingest_env, tmp_path / "ingest.log") as ingest,
            service("services.alerts", alerts_env, tmp_path / "alerts.log") as alerts,
            client(broker.port, "svc.operator") as operator,
        ):
            wait_healthy(ingest_env, ingest, tmp_path / "ingest.log")
            wait_healthy(alerts_env, alerts, tmp_path / "alerts.log")
            assert not operator.subscribe("facility/alerts/bin_fire_risk/#").is_failure
            assert not operator.subscribe("facility/deadletter/#").is_failure
            with client(broker.port, "bin-001") as bin1:
                now_ms = int(time.time() * 1000)
                for seq, age_s in enumerate((150, 90, 30)):
                    reading = {
                        "ts": now_ms - age_s * 1000,
                        "seq": seq,
                        "weight_kg": 40.0,
                        "fill_pct": 20.0,
                        "temperature_c": 70.0,
                    }
                    topic = "facility/ewaste/ewaste_bin/bin-001/telemetry"
                    assert not bin1.publish(topic, json.dumps(reading).encode()).is_failure
                # A bad reading: ingest must be allowed to dead-letter it.
                assert not bin1.publish(topic, b"not json").is_failure
            # Alerts read the telemetry and may publish the alert event.
            operator.wait_for("facility/alerts/bin_fire_risk/ewaste/bin-001")
            operator.wait_for("facility/deadletter/ingest")
            # Ingest read the telemetry and stored it.
            deadline = time.monotonic() + WAIT_S
            points = tmp_path / "points.lp"
            while time.monotonic() < deadline:
                if points.exists() and len(points.read_text().splitlines()) >= 3:
                    break
                time.sleep(0.2)  # the file sink flushes within INGEST_FLUSH_INTERVAL_MS
            assert len(points.read_text().splitlines()) == 3
        assert ingest.returncode == 0, (tmp_path / "ingest.log").read_text()[-2000:]
        assert alerts.returncode == 0, (tmp_path / "alerts.log").read_text()[-2000:]


def test_simulator_user_plays_ci_smoke_under_the_deploy_acl(tmp_path: Path) -> None:
    """svc.simulator publishes every device (per-device connections, Wills) and the fleet."""
    with running_broker(tmp_path / "broker") as broker:
        ingest_env = service_env(broker, "svc.ingest", tmp_path) | {
            "INGEST_SINK": "file",
            "INGEST_FILE_PATH": str(tmp_path / "points.lp"),
            "INGEST_SPOOL_DIR": str(tmp_path / "spool"),
        }
        with (
            service("services.ingest", ingest_env, tmp_path / "ingest.log") as ingest,
            client(broker.port, "svc.operator") as operator,
        ):
            wait_healthy(ingest_env, ingest, tmp_path / "ingest.log")
            assert not operator.subscribe("facility/dispatch/+/status").is_failure
            sim_env = service_env(broker, "svc.simulator", tmp_path) | {
                "SIMULATOR_SCENARIO_DIR": str(REPO / "config" / "scenarios"),
                "SIMULATOR_PROGRESS": "off",
                "SIMULATOR_SUMMARY_FILE": str(tmp_path / "summary.json"),
            }
            base = {
                k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "SIMULATOR_"))
            }
            simulator = subprocess.run(
                [sys.executable, "-m", "devices.simulator", "--scenario", "ci-smoke"],
                cwd=REPO,
                env={**base, "LOG_FORMAT": "console", **sim_env},
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert simulator.returncode == 0, simulator.stdout[-2000:] + simulator.stderr[-3000:]
            summary = json.loads((tmp_path / "summary.json").read_text())
            # The fleet's dispatch progress went through (retained, so seen even if early).
            with operator.got_message:
                assert operator.got_message.wait_for(lambda: operator.messages, WAIT_S)
            # Every valid reading the simulator published reached ingest and was stored.
            points = tmp_path / "points.lp"
            deadline = time.monotonic() + WAIT_S
            valid = summary["messages_total"] - sum(summary["expected_rejections"].values())
            assert valid > 1000 and summary["dispatch_status_messages"] > 0
            stored = 0
            while time.monotonic() < deadline:
                stored = len(points.read_text().splitlines()) if points.exists() else 0
                if stored >= valid:
                    break
                time.sleep(0.5)  # ingest drains the burst, bounded by the deadline
            # (Status points and stored duplicates can only add lines.)
            assert stored >= valid, (stored, summary)


def stored_readings(points: Path, device_id: str, want: int) -> int:
    """Distinct points of ``device_id`` in the file sink once there are ``want`` (or at the
    deadline)."""

    def count() -> int:
        if not points.exists():
            return 0
        # (Distinct lines: a redelivered reading is stored again as the same point.)
        lines = set(points.read_text().splitlines())
        return sum(f"device_id={device_id}," in line for line in lines)

    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and count() < want:
        time.sleep(0.2)  # the file sink flushes within INGEST_FLUSH_INTERVAL_MS
    return count()


def test_ingest_gets_every_queued_reading_after_a_device_used_its_client_id(
    tmp_path: Path,
) -> None:
    """Issue 11 point 1: a device credential connecting as `facility-ingest` while ingest is away
    neither wipes nor drains ingest's persistent session (it did: 0 of 501 stored)."""
    queued = 120
    with running_broker(tmp_path / "broker") as broker:
        ingest_env = service_env(broker, "svc.ingest", tmp_path) | {
            "INGEST_SINK": "file",
            "INGEST_FILE_PATH": str(tmp_path / "points.lp"),
            "INGEST_SPOOL_DIR": str(tmp_path / "spool"),
        }
        with service("services.ingest", ingest_env, tmp_path / "ingest.log") as ingest:
            wait_healthy(ingest_env, ingest, tmp_path / "ingest.log")
        assert ingest.returncode == 0, (tmp_path / "ingest.log").read_text()[-2000:]
        # Ingest is away: its session queues the readings.
        now_ms = int(time.time() * 1000)
        topic = "facility/ewaste/ewaste_bin/bin-001/telemetry"
        with client(broker.port, "bin-001") as bin1:
            for seq in range(queued):
                reading = {
                    "ts": now_ms - (queued - seq) * 1000,
                    "seq": seq,
                    "weight_kg": 40.0,
                    "fill_pct": 20.0,
                    "temperature_c": 21.0,
                }
                assert not bin1.publish(topic, json.dumps(reading).encode()).is_failure
        for resume in (False, True):  # wipe (clean start), then resume (drain)
            attacker = Client(
                broker.port,
                "bin-002",
                PASSWORDS["bin-002"],
                client_id=ingest_env["MQTT_CLIENT_ID"],
                persistent=resume,
            )
            assert not attacker.connect().is_failure
            attacker.close()
            assert attacker.messages == []
        log = tmp_path / "ingest-again.log"
        again_env = ingest_env | {"HTTP_PORT_FILE": str(tmp_path / "ingest-again.port")}
        with service("services.ingest", again_env, log) as again:
            wait_healthy(again_env, again, log)
            stored = stored_readings(tmp_path / "points.lp", "bin-001", queued)
        assert again.returncode == 0, log.read_text()[-2000:]
    assert stored == queued


def _compose_bridge_env(port: int, sources: Path) -> dict[str, str]:
    """The bridge's login as compose gives it (user, client id), on a test broker's port."""
    compose_env = service_environment(services()["bridge"])
    return {
        "MQTT_URL": f"mqtt://127.0.0.1:{port}",
        "MQTT_USERNAME": compose_env["MQTT_USERNAME"],
        "MQTT_PASSWORD": PASSWORDS["svc.bridge"],
        "MQTT_CLIENT_ID": compose_env["MQTT_CLIENT_ID"],
        "DEVICES_FILE": str(REPO / "config" / "devices.yaml"),
        "BRIDGE_SOURCES_FILE": str(sources),
    }


def test_the_bridge_publishes_a_registered_device_as_svc_bridge_and_passes_its_healthcheck(
    tmp_path: Path, server_factory: Callable[..., MosquittoServer]
) -> None:
    """facility-bridge with the compose settings (svc.bridge) under the generated ACL: a foreign
    message for a registered device becomes its telemetry, one for an unknown device a dead
    letter, and the compose healthcheck command passes against its /healthz."""
    network_server = server_factory(MosquittoServer)  # a foreign system's own broker
    sources = write_sources(
        tmp_path,
        f"  - name: lab-bins\n    broker: {{url: '{network_server.url}'}}\n"
        "    subscribe: bins/+\n    preset: generic\n    kind: ewaste_bin\n"
        "    device: {topic_level: 1}\n    fields:\n      fill_pct: {path: level}\n",
    )
    with running_broker(tmp_path / "broker") as broker:
        bridge = BridgeProcess(tmp_path, _compose_bridge_env(broker.port, sources)).start()
        try:
            wait_until(lambda: bridge.health()[0] == 200, timeout=WAIT_S)
            with client(broker.port, "svc.operator") as operator:
                assert not operator.subscribe("facility/#").is_failure
                now_ms = int(time.time() * 1000)
                publish(network_server.url, "bins/bin-001", json.dumps({"level": 42, "ts": now_ms}))
                publish(network_server.url, "bins/bin-999", json.dumps({"level": 1, "ts": now_ms}))
                received = operator.wait_for("facility/deadletter/bridge")
            telemetry = "facility/ewaste/ewaste_bin/bin-001/telemetry"
            readings = [json.loads(body) for topic, body in received if topic == telemetry]
            assert [r["fill_pct"] for r in readings] == [42], received
            code, body = bridge.health()
            assert code == 200 and body["refused_readings"] == 0, body
            check = services()["bridge"]["healthcheck"]["test"]
            assert check[:2] == ["CMD", "python"]
            probe = [
                sys.executable,
                *[a.replace(":9103/", f":{bridge.http_port}/") for a in check[2:]],
            ]
            assert subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
        finally:
            bridge.stop()
        # The same probe fails once the bridge is gone: it is a real check.
        assert subprocess.run(probe, capture_output=True, timeout=30).returncode != 0


def test_a_source_on_our_broker_rides_the_bridges_one_link_and_is_acknowledged(
    tmp_path: Path,
) -> None:
    """A Shelly-style source without `broker:` under the deploy broker (use_username_as_clientid):
    it used to open a second svc.bridge connection, the two took each other's session over and
    svc.bridge had no read rights on the source's topics. Now its readings arrive, the bridge
    stays connected and healthy, and every source message is acknowledged in its session."""
    # The deploy ACL has no Shelly device user yet: one for the test, the rest as shipped.
    acl = tmp_path / "acl"
    acl.write_text(
        (REPO / "deploy" / "mosquitto" / "acl").read_text()
        + "\nuser shelly-pub\ntopic write +/events/rpc\n"
    )
    credentials = f"{deploy_env()['MQTT_DEVICE_CREDENTIALS']},shelly-pub:shelly-secret"
    # The source's filter is the shipped shelly-meters one, which the generated ACL lets
    # svc.bridge read; the topic's first level names our device.
    sources = write_sources(tmp_path, SHELLY_SOURCE + "    device: {topic_level: 0}\n")
    client_id = service_environment(services()["bridge"])["MQTT_CLIENT_ID"]
    topic = "nzc-meter-1/events/rpc"
    telemetry = "facility/nzc/energy_meter/nzc-meter-1/telemetry"
    with running_broker(
        tmp_path / "broker", MOSQUITTO_ACL_TEMPLATE=str(acl), MQTT_DEVICE_CREDENTIALS=credentials
    ) as broker:
        bridge = BridgeProcess(tmp_path, _compose_bridge_env(broker.port, sources)).start()
        try:
            wait_until(lambda: bridge.health()[0] == 200, timeout=WAIT_S)
            with (
                client(broker.port, "svc.operator") as operator,
                client(broker.port, "shelly-pub", password="shelly-secret") as shelly,
            ):
                assert not operator.subscribe(telemetry).is_failure
                now_s = time.time()
                for n, watts in enumerate((100.0, 200.0, 300.0)):
                    _, status, _ = shelly_status(now_s - 30 + n, watts, 1000.0 + n)
                    assert not shelly.publish(topic, status).is_failure
                    # Healthy after each message: no session takeover in between.
                    assert bridge.health()[0] == 200, bridge.health()
                with operator.got_message:
                    assert operator.got_message.wait_for(
                        lambda: len(operator.messages) >= 3, WAIT_S
                    ), operator.messages
                powers = [json.loads(raw)["load_power_w"] for _, raw in operator.messages]
                assert powers == [100.0, 200.0, 300.0]
                acked = labelled("bridge_messages_acked_total", source="shelly-meters")
                wait_until(lambda: bridge.metric(acked) == 3, timeout=WAIT_S)
                code, health = bridge.health()
                assert code == 200 and health["sources"]["shelly-meters"]["connected"], health
        finally:
            assert bridge.terminate() == 0, bridge.log_tail()
        # One connection, never taken over (mosquitto logs every takeover).
        assert "already connected" not in broker.log.read_text()
        # Nothing unacknowledged in the bridge's session: a marker queued while it is away is
        # the first and only thing its session delivers (an unacknowledged message comes first).
        with client(broker.port, "shelly-pub", password="shelly-secret") as shelly:
            assert not shelly.publish(topic, b'{"marker": 1}').is_failure
        with client(broker.port, "svc.bridge", client_id=client_id, persistent=True) as session:
            received = session.wait_for(topic)
        assert received == [(topic, b'{"marker": 1}')], received
