"""The broker with a large queued backlog: how long an autosave stalls it, per autosave setting.

``python -m scripts.bench.broker_backlog [--messages 500000]`` (not part of ``make bench``: it
takes a few minutes). For each setting, the real ``mosquitto`` binary runs the persistence and
queue options of ``deploy/mosquitto/mosquitto.conf`` (only ``autosave_*`` varied): a persistent
QoS 1 session (ingest, away) gets ``--messages`` readings of ~300 bytes queued, then a probe
client publishes QoS 1 every 20 ms for ``--probe-s`` seconds and records each PUBACK's round
trip. The worst round trip is the stall a save causes (mosquitto saves on its only thread);
also reported: the persistence file's size, the saves logged, and the restart time with the
backlog (loading the file).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from common.settings import CommonSettings, load_settings
from devices.simulator.fastpub import FastPublisher, topic_bytes
from tests.servers import MosquittoServer

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
# ~300 bytes, like a bin's reading with its metadata.
PAYLOAD = (
    b'{"ts":1765000000000,"device_id":"bin-001","fields":{"weight_kg":41.25,"fill_pct":37.5,'
    b'"temperature_c":21.5,"battery_pct":88.0},"seq":123456,"fw":"1.4.2","pad":"'
    + b"x" * 120
    + b'"}'
)
SETTINGS = {
    "autosave 10 s (before)": ["autosave_interval 10", "autosave_on_changes false"],
    "autosave 300 s": ["autosave_interval 300", "autosave_on_changes false"],
    "autosave 1800 s": ["autosave_interval 1800", "autosave_on_changes false"],
}


def deploy_persistence_options() -> list[str]:
    """The deploy config's persistence and queue lines (paths and autosave left out)."""
    keep = ("max_queued_messages", "max_queued_bytes", "queue_qos0_messages",
            "max_inflight_messages", "max_inflight_bytes", "persistent_client_expiration",
            "message_size_limit", "max_packet_size")  # fmt: skip
    lines = []
    for line in DEPLOY_CONF.read_text().splitlines():
        if line.split(" ", 1)[0] in keep:
            lines.append(line.strip())
    return lines


def _client(port: int, client_id: str, clean: bool) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if clean else 7 * 86_400
    client.connect("127.0.0.1", port, clean_start=clean, properties=props)
    return client


def park_session(port: int) -> None:
    """ingest's persistent session, subscribed and then away: the broker queues for it."""
    done = threading.Event()
    client = _client(port, "svc.ingest", clean=False)
    client.on_subscribe = lambda *_: done.set()
    client.loop_start()
    client.subscribe("facility/#", qos=1)
    if not done.wait(10):
        raise RuntimeError("no SUBACK")
    client.disconnect()
    client.loop_stop()


def fill_backlog(port: int, messages: int) -> float:
    """``messages`` QoS 1 publishes (the load mode's lean publisher); seconds taken."""
    settings = load_settings(CommonSettings, mqtt_url=f"mqtt://127.0.0.1:{port}")
    topic = topic_bytes("facility/ewaste/ewaste_bin/bin-001/telemetry")
    began = time.monotonic()
    with FastPublisher(settings, "bench-filler", window=1000) as pub:
        sent = 0
        while sent < messages:
            n = min(500, pub.room(), messages - sent)
            if n > 0:
                pub.send([pub.packet(topic, PAYLOAD) for _ in range(n)])
                sent += n
            pub.wait_acks(block=pub.room() == 0)
        pub.drain()
    return time.monotonic() - began


def probe(port: int, seconds: float) -> list[float]:
    """PUBACK round trips (ms) of one QoS 1 publish every 20 ms."""
    client = _client(port, "bench-probe", clean=True)
    client.loop_start()
    rtts: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent = time.monotonic()
        info = client.publish("bench/probe", b"x", qos=1)
        info.wait_for_publish(timeout=60)
        rtts.append((time.monotonic() - sent) * 1000)
        time.sleep(max(0.0, 0.02 - (time.monotonic() - sent)))  # pacing, not synchronisation
    client.disconnect()
    client.loop_stop()
    return rtts


def one(name: str, options: list[str], messages: int, probe_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        server = MosquittoServer(tmp, extra_config=[*deploy_persistence_options(), *options])
        server.start()
        try:
            park_session(server.port)
            fill_s = fill_backlog(server.port, messages)
            rtts = probe(server.port, probe_s)
            stop_began = time.monotonic()
            server.stop()
            stop_s = time.monotonic() - stop_began
            size = server.persistence_path.stat().st_size
            log = server.log_path.read_text(errors="replace")
            saves = len(re.findall(r"Saving in-memory database", log))
            restart_began = time.monotonic()
            server.start()
            restart_s = time.monotonic() - restart_began
        finally:
            server.stop()
    rtts.sort()
    return {
        "setting": name,
        "messages": messages,
        "fill_s": round(fill_s, 1),
        "probe_publishes": len(rtts),
        "rtt_median_ms": round(statistics.median(rtts), 2),
        "rtt_p99_ms": round(rtts[int(len(rtts) * 0.99) - 1], 1),
        "rtt_max_ms": round(rtts[-1], 1),
        "saves_logged": saves,
        "db_mb": round(size / 1e6, 1),
        "clean_stop_s": round(stop_s, 2),
        "restart_s": round(restart_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--probe-s", type=float, default=40.0)
    args = parser.parse_args(argv)
    version = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
    print(version.stdout.splitlines()[0] if version.stdout else "mosquitto ?")
    for name, options in SETTINGS.items():
        print(json.dumps(one(name, options, args.messages, args.probe_s)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
