"""Latency of facility-alerts: message published -> alert event received, p50/p99/max, with
5,000 msg/s of background telemetry and, as a baseline in the same run, with none; and its
throughput draining a backlog queued in its persistent session while it was down (every
message judged and acknowledged).

``python -m scripts.bench.alerts`` prints a table; ``run(repeats=3) -> dict`` returns figures.
The service runs as its own process (``python -m services.alerts``) against a fresh local
Mosquitto; the default rules plus one trigger rule that fires and resolves on every trigger.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from paho.mqtt import client as mqtt

from scripts.bench.ingest import forget_session, publish_backlog
from tests.helpers import nodelay_client
from tests.servers import MosquittoServer, free_ports, wait_alerts_ready

ROOT = Path(__file__).resolve().parents[2]
P = "facility"
TRIGGER_RULE = """
  - name: bench_trigger
    type: threshold
    select: {device: bench-trigger}
    field: temperature_c
    when: ">= 60"
    clear: "< 45"
"""
RATE = 5000
SECONDS = 6.0
TRIGGER_EVERY_S = 0.05
BACKLOG = 50_000


def _client(url: str, name: str) -> mqtt.Client:
    client = nodelay_client(url, f"{name}-{os.getpid()}", max_inflight=2000)
    client.loop_start()
    return client


def _load_messages(count: int) -> list[tuple[str, bytes]]:
    """Background telemetry from 2,000 synthetic devices of every kind; none alerts."""
    rng = random.Random(7)
    out = []
    for i in range(count):
        n = i % 2000
        ts = int(time.time() * 1000)
        if n % 4 == 0:
            topic = f"{P}/nzc/energy_meter/bench-m{n}/telemetry"
            body: dict[str, Any] = {
                "ts": ts,
                "pv_power_w": 4000.0,
                "load_power_w": 3000.0,
                "grid_power_w": -1000.0,
                "pv_energy_wh": 1000.0 + i,
                "load_energy_wh": 800.0 + i,
                "grid_import_wh": 10.0,
            }
        elif n % 4 == 1:
            topic = f"{P}/uac/visitor_counter/bench-g{n}/telemetry"
            body = {"ts": ts, "entries_total": i, "exits_total": i}
        else:
            topic = f"{P}/ewaste/ewaste_bin/bench-b{n}/telemetry"
            body = {
                "ts": ts,
                "fill_pct": rng.uniform(10, 50),
                "weight_kg": 40.0,
                "battery_pct": 80.0,
                "temperature_c": 22.0,
            }
        out.append((topic, json.dumps(body).encode()))
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """An MQTT 3.1.1 QoS 1 PUBLISH, encoded once up front."""
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _varint(len(body)) + body


def _publish_load(url: str, rate: int, seconds: float, ready: Any) -> None:
    """The background telemetry (QoS 1), from its own process as devices would be. A raw
    socket with pre-encoded packets: a paho publisher would need a core of its own at this
    rate, and on a small machine the generator must not starve the system it measures."""
    host, port = url.removeprefix("mqtt://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = f"bench-load-{os.getpid()}".encode()
    connect = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    sock.sendall(b"\x10" + _varint(len(connect)) + connect)
    if sock.recv(4)[:1] != b"\x20":
        raise RuntimeError("load publisher: no CONNACK")
    drain = threading.Thread(target=lambda: _drain(sock), daemon=True)
    drain.start()
    load = [
        _publish_packet(topic, body, i % 65535 + 1)
        for i, (topic, body) in enumerate(_load_messages(int(rate * seconds)))
    ]
    ready.set()
    start = time.perf_counter()
    sent = 0
    while sent < len(load):
        due = min(len(load), int((time.perf_counter() - start) * rate))
        if due > sent:
            sock.sendall(b"".join(load[sent:due]))
            sent = due
        time.sleep(0.002)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()


def _drain(sock: socket.socket) -> None:
    """Read and drop the PUBACKs."""
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _measure(url: str, rate: int) -> list[float]:
    """Publish ``rate`` msg/s for SECONDS with a trigger every TRIGGER_EVERY_S; latencies (ms)."""
    sent: dict[int, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        event = json.loads(msg.payload)
        index = round((event["value"] % 1) * 10000)
        with lock:
            start = sent.pop(index, None)
            if start is not None:
                latencies.append((now - start) * 1000)

    sub = _client(url, "bench-sub")
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_message = on_message
    sub.subscribe(f"{P}/alerts/bench_trigger/#", qos=1)
    subscribed.wait(10)
    pub = _client(url, "bench-pub")
    loader = None
    if rate:
        ready = multiprocessing.Event()
        loader = multiprocessing.Process(target=_publish_load, args=(url, rate, SECONDS, ready))
        loader.start()
        ready.wait(60)
    trigger_topic = f"{P}/ewaste/ewaste_bin/bench-trigger/telemetry"
    start = time.perf_counter()
    # An even count: every run ends "cool", so the next one's first trigger is a transition.
    triggers = int(SECONDS / TRIGGER_EVERY_S) // 2 * 2
    for index in range(1, triggers + 1):
        time.sleep(max(0.0, start + (index - 1) * TRIGGER_EVERY_S - time.perf_counter()))
        # Alternate hot / cool so every trigger is a transition; the index rides in the
        # value's fraction so the alert event names its trigger.
        temp = (70 if index % 2 else 20) + index / 10000
        body = {
            "ts": int(time.time() * 1000),
            "fill_pct": 10.0,
            "weight_kg": 5.0,
            "temperature_c": temp,
        }
        with lock:
            sent[index] = time.perf_counter()
        pub.publish(trigger_topic, json.dumps(body).encode(), qos=1)
    if loader is not None:
        loader.join(60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with lock:
            if not sent:
                break
        time.sleep(0.05)
    for client in (pub, sub):
        client.disconnect()
        client.loop_stop()
    with lock:
        lost = len(sent)
    if lost:
        print(f"  warning: {lost} triggers without an alert within 10 s", file=sys.stderr)
    return latencies


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            found: dict[str, Any] = json.loads(r.read())
            return found
    except (OSError, ValueError):
        return {}


def _accepted(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('alerts_messages_total{outcome="accepted"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _backlog_rate(broker: MosquittoServer, env: dict[str, str], n: int) -> float:
    """Messages/s judging ``n`` readings queued while the service was down: from its
    reconnect (``mqtt_connected``) to the n-th accepted message. The readings are
    ``scripts.bench.ingest``'s (44 bins, fill 0..99 %: ``bin_full`` fires and resolves)."""
    client_id = f"bench-alerts-backlog-{time.monotonic_ns()}"
    port = free_ports(1)[0]
    env = {**env, "MQTT_CLIENT_ID": client_id, "ALERTS_HTTP_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "services.alerts"], cwd=ROOT, env=env)
    try:
        wait_alerts_ready(port)  # the persistent session exists: now leave it
    finally:
        proc.terminate()
        proc.wait(30)
    publish_backlog(broker, n)
    proc = subprocess.Popen([sys.executable, "-m", "services.alerts"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 600
        while not _health(port).get("mqtt_connected"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("facility-alerts did not reconnect")
            time.sleep(0.01)
        first = time.perf_counter()
        while _accepted(port) < n:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("facility-alerts did not drain its backlog")
            time.sleep(0.05)
        return n / (time.perf_counter() - first)
    finally:
        proc.terminate()
        proc.wait(30)
        forget_session(broker, client_id)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(repeats: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text((ROOT / "config" / "rules.yaml").read_text() + TRIGGER_RULE)
        # Without TCP_NODELAY the broker holds small packets for a delayed ACK (~40 ms).
        broker = MosquittoServer(
            Path(tmp) / "mosquitto", extra_config=["set_tcp_nodelay true"]
        ).start()
        port = free_ports(1)[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "ALERTS_"))}
        env.update(
            MQTT_URL=broker.url,
            ALERTS_RULES_FILE=str(rules),
            ALERTS_INFLUX_ENABLED="false",
            ALERTS_HTTP_PORT=str(port),
            LOG_LEVEL="WARNING",
        )
        proc = subprocess.Popen([sys.executable, "-m", "services.alerts"], cwd=ROOT, env=env)
        try:
            wait_alerts_ready(port)
            results: dict[str, Any] = {}
            for label, rate in (("idle", 0), ("loaded", RATE)):
                samples: list[float] = []
                before = _service_buckets(port)
                for _ in range(repeats):
                    samples += _measure(broker.url, rate)
                service = _service_p99_ms(before, _service_buckets(port))
                results[label] = {
                    "service_p99_le_ms": service,
                    "rate_msg_s": rate,
                    "samples": len(samples),
                    "p50_ms": round(statistics.median(samples), 2),
                    "p99_ms": round(_percentile(samples, 0.99), 2),
                    "max_ms": round(max(samples), 2),
                }
            results["p99_ratio_loaded_vs_idle"] = round(
                results["loaded"]["p99_ms"] / max(results["idle"]["p99_ms"], 1e-6), 2
            )
            results["target_p99_ms"] = 50
            results["meets_target"] = results["loaded"]["p99_ms"] <= 50
        finally:
            proc.terminate()
            proc.wait(30)
        try:
            # Alone: the latency run's service would judge the backlog as well.
            rates = [_backlog_rate(broker, env, BACKLOG) for _ in range(repeats)]
        finally:
            broker.close()
        results["backlog"] = {
            "messages": BACKLOG,
            "runs_msg_s": [round(r) for r in rates],
            "median_msg_s": round(statistics.median(rates)),
        }
        return results


def _service_buckets(port: int) -> list[tuple[float, float]]:
    """The service's own arrival -> publish histogram: cumulative (upper bound s, count)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith("alerts_message_to_publish_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    return buckets


def _service_p99_ms(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float:
    """Upper bound (ms) of the bucket holding the 99th percentile between two snapshots."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1] if counts else 0
    for le, count in counts:
        if total and count >= 0.99 * total:
            return le * 1000
    return math.nan


def main() -> None:
    results = run()
    print("alerts latency: message published -> alert event received")
    print(
        f"{'load':8} {'msg/s':>6} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'service p99 <= ms':>18}"
    )
    for label in ("idle", "loaded"):
        r = results[label]
        print(
            f"{label:8} {r['rate_msg_s']:>6} {r['samples']:>5} {r['p50_ms']:>8} "
            f"{r['p99_ms']:>8} {r['max_ms']:>8} {r['service_p99_le_ms']:>18g}"
        )
    print(
        f"p99 loaded/idle: {results['p99_ratio_loaded_vs_idle']}x; target p99 <= 50 ms: "
        f"{'met' if results['meets_target'] else 'NOT met'}"
    )
    backlog = results["backlog"]
    print(
        f"backlog of {backlog['messages']:,} judged and acknowledged: "
        f"{backlog['median_msg_s']:,} msg/s (median; runs {backlog['runs_msg_s']})"
    )


if __name__ == "__main__":
    main()
