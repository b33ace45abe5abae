"""``mqtts://`` end to end: common.mqtt verifies a real Mosquitto TLS listener against a CA."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common.mqtt import MqttLink
from common.settings import CommonSettings
from tests.servers import MosquittoServer, free_ports


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _self_signed(d: Path, name: str, subject: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
             "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)  # fmt: skip


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 it signed, and an unrelated CA."""
    d = tmp_path / "tls"
    d.mkdir()
    _self_signed(d, "ca", "/CN=facility test CA")
    _self_signed(d, "other", "/CN=someone else")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
             cwd=d)  # fmt: skip
    return {name: d / name for name in ("ca.crt", "server.crt", "server.key", "other.crt")}


def _tls_broker(
    server_factory: Callable[..., Any], tls: dict[str, Path]
) -> tuple[MosquittoServer, int]:
    tls_port = free_ports(1)[0]
    broker = server_factory(
        MosquittoServer,
        extra_config=[
            f"listener {tls_port} 127.0.0.1",
            f"cafile {tls['ca.crt']}",
            f"certfile {tls['server.crt']}",
            f"keyfile {tls['server.key']}",
        ],
    )
    return broker, tls_port


def _link(url: str, ca: Path) -> MqttLink:
    settings = CommonSettings(mqtt_url=url, mqtt_ca_file=ca, _env_file=None)  # type: ignore[call-arg]
    return MqttLink(settings, "tls-test")


def test_mqtts_url_connects_and_publishes_over_verified_tls(
    server_factory: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    broker, tls_port = _tls_broker(server_factory, tls_files)
    link = _link(f"mqtts://127.0.0.1:{tls_port}", tls_files["ca.crt"])
    received = threading.Event()
    link.set_message_handler(lambda _message: received.set())
    link.add_on_connect(lambda client, _present: client.subscribe("tls/#", qos=1))
    subscribed = threading.Event()
    link.client.on_subscribe = lambda *_a: subscribed.set()
    link.start()
    try:
        assert link.wait_connected(15), link.last_error
        assert subscribed.wait(10)
        info = link.client.publish("tls/check", b"hello", qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
        assert received.wait(10)
    finally:
        link.stop()
    assert broker.is_running


def test_a_broker_certificate_from_another_ca_is_refused(
    server_factory: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    _broker, tls_port = _tls_broker(server_factory, tls_files)
    link = _link(f"mqtts://127.0.0.1:{tls_port}", tls_files["other.crt"])
    link.start()
    try:
        # Certificate verification fails on every attempt: it must never count as connected.
        assert not link.wait_connected(3)
    finally:
        link.stop()
