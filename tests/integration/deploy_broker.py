"""The deploy/mosquitto config run by the real mosquitto binary in a tmp dir (test helper).

The compose file's broker setup is reproduced as closely as a container-less machine allows:
the real ``entrypoint.sh`` generates the password file and ACL from environment variables and
the real ``mosquitto.conf`` (and the ``conf.d/tls.conf`` the entrypoint writes when given a
certificate) is used with only its paths and listeners rewritten: 1883 (devices and services),
1884 (the simulator) and 8883 (TLS) move to free loopback ports.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "mosquitto"
WAIT_S = 15.0

PASSWORDS = {
    "svc.ingest": "ingest-secret",
    "svc.alerts": "alerts-secret",
    "svc.simulator": "simulator-secret",
    "svc.operator": "operator-secret",
    "svc.bridge": "bridge-secret",
    "bin-001": "bin-001-secret",
    "bin-002": "bin-002-secret",
    "nzc-meter-1": "meter-secret",
}


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None or shutil.which("mosquitto_passwd") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto / mosquitto_passwd not installed (scripts/install-servers.sh)")
        pytest.skip("mosquitto not installed (make servers-deps)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_entrypoint(run_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run deploy/mosquitto/entrypoint.sh with a no-op command: only the files are generated."""
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MOSQUITTO_RUN_DIR": str(run_dir),
        "MOSQUITTO_ACL_TEMPLATE": str(DEPLOY / "acl"),
        "MQTT_DEVICE_CREDENTIALS_FILE": str(run_dir / "no-such-file"),
        "MQTT_TLS_DIR": str(run_dir / "no-tls"),
        **env,
    }
    return subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "true"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def move_listeners(text: str, ports: dict[int, int]) -> str:
    """Each ``listener <deploy port>`` line moved to its free port on loopback."""

    def one(match: re.Match[str]) -> str:
        return f"listener {ports[int(match.group(1))]} 127.0.0.1"

    return re.sub(r"(?m)^listener (\d+)$", one, text)


def adapted_config(run_dir: Path, data_dir: Path, ports: dict[int, int]) -> str:
    """The deploy config with container paths and the listeners moved to the tmp dir/ports."""
    text = move_listeners((DEPLOY / "mosquitto.conf").read_text(), ports)
    for fragment in sorted((run_dir / "conf.d").glob("*.conf")):
        fragment.write_text(move_listeners(fragment.read_text(), ports))
    text = text.replace("/mosquitto/run/", f"{run_dir}/")
    text = text.replace("/mosquitto/data/", f"{data_dir}/")
    # pytest's tmp dirs are private to root: keep root rather than drop to `mosquitto`.
    return text + "\nuser root\n"


@dataclass
class DeployBroker:
    """The real broker running the deploy config; restartable with its persistence dir."""

    tmp: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    simulator_port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.binary = mosquitto_binary()
        self.run_dir = self.tmp / "run"
        self.data_dir = self.tmp / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        result = run_entrypoint(self.run_dir, self.env)
        assert result.returncode == 0, result.stderr
        self.conf = self.tmp / "mosquitto.conf"
        ports = {1883: self.port, 1884: self.simulator_port, 8883: self.tls_port}
        self.conf.write_text(adapted_config(self.run_dir, self.data_dir, ports))
        self.log = self.tmp / "mosquitto.log"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)  # polling a port that is not open yet; bounded by deadline
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its in-memory database on a clean stop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=WAIT_S)
        self.proc = None


def deploy_env() -> dict[str, str]:
    devices = ",".join(
        f"{user}:{pw}" for user, pw in PASSWORDS.items() if not user.startswith("svc.")
    )
    return {
        "MQTT_INGEST_PASSWORD": PASSWORDS["svc.ingest"],
        "MQTT_ALERTS_PASSWORD": PASSWORDS["svc.alerts"],
        "MQTT_SIMULATOR_PASSWORD": PASSWORDS["svc.simulator"],
        "MQTT_OPERATOR_PASSWORD": PASSWORDS["svc.operator"],
        "MQTT_BRIDGE_PASSWORD": PASSWORDS["svc.bridge"],
        "MQTT_DEVICE_CREDENTIALS": devices,
    }


@contextmanager
def running_broker(tmp: Path, **env: str) -> Iterator[DeployBroker]:
    """The deploy broker with :func:`deploy_env` (plus ``env``) for the entrypoint."""
    broker = DeployBroker(tmp, deploy_env() | env)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Client:
    """A paho v5 client for assertions: connect result, PUBACK/SUBACK codes, received messages."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None = None,
        *,
        client_id: str = "",
        persistent: bool = False,
        ca_file: Path | None = None,
    ) -> None:
        self.port = port
        self.persistent = persistent
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        # Set when the broker drops the connection (paho then reconnects on its own).
        self.disconnected = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.got_message = threading.Condition()
        self._acks: dict[int, ReasonCode | list[ReasonCode]] = {}
        self._ack_cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_ack
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        self.connack = rc
        self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, _rc: ReasonCode, _p: object
    ) -> None:
        with self._ack_cond:
            self.disconnected.set()
            self._ack_cond.notify_all()

    def _on_ack(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        with self._ack_cond:
            self._acks[mid] = rc
            self._ack_cond.notify_all()

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, rcs: list[ReasonCode], _p: object
    ) -> None:
        with self._ack_cond:
            self._acks[mid] = rcs
            self._ack_cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.got_message:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self.got_message.notify_all()

    def connect(self) -> ReasonCode:
        props = Properties(PacketTypes.CONNECT)
        if self.persistent:
            props.SessionExpiryInterval = 3600
        self.client.connect(
            "127.0.0.1", self.port, keepalive=30, clean_start=not self.persistent, properties=props
        )
        self.client.loop_start()
        assert self.connected.wait(WAIT_S), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def _wait_ack(self, mid: int) -> ReasonCode | list[ReasonCode]:
        with self._ack_cond:
            assert self._ack_cond.wait_for(lambda: mid in self._acks, WAIT_S), "no ack"
            return self._acks.pop(mid)

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> ReasonCode:
        """QoS 1 publish; returns the PUBACK reason code (0x87 = not authorised)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        result = self._wait_ack(info.mid)
        assert isinstance(result, ReasonCode)
        return result

    def try_publish(self, topic: str, payload: bytes) -> ReasonCode | None:
        """QoS 1 publish the broker may refuse by disconnecting: the PUBACK code, or None."""
        info = self.client.publish(topic, payload, qos=1)
        with self._ack_cond:
            done = self._ack_cond.wait_for(
                lambda: info.mid in self._acks or self.disconnected.is_set(), WAIT_S
            )
            assert done, "neither a PUBACK nor a disconnect"
            result = self._acks.pop(info.mid, None)
        assert result is None or isinstance(result, ReasonCode)
        return result

    def subscribe(self, topic: str) -> ReasonCode:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        result = self._wait_ack(mid)
        assert isinstance(result, list)
        return result[0]

    def wait_for(self, topic: str) -> list[tuple[str, bytes]]:
        """Wait (bounded) until ``topic`` arrives; return everything received so far."""
        with self.got_message:
            ok = self.got_message.wait_for(
                lambda: any(t == topic for t, _ in self.messages), WAIT_S
            )
            assert ok, f"{topic} never arrived; got {self.messages}"
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def client(
    port: int, username: str | None, password: str | None = None, **kwargs: object
) -> Iterator[Client]:
    """A connected :class:`Client`; ``password`` defaults to the user's in PASSWORDS."""
    secret = password or PASSWORDS.get(username or "")
    c = Client(port, username, secret, **kwargs)  # type: ignore[arg-type]
    rc = c.connect()
    assert not rc.is_failure, f"{username} refused: {rc}"
    try:
        yield c
    finally:
        c.close()
