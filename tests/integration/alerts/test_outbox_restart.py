"""A webhook delivery queued while the receiver is down survives SIGKILL of facility-alerts:
the next start reloads it from the outbox and delivers it (once per idempotency key). Alerts
queued while the outbox's disk refuses writes (RLIMIT_FSIZE: a short write, then EFBIG, as a
full disk's short write then ENOSPC) are journaled once it has room and delivered after a
restart, and the shutdown log counts them truly."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from services.alerts.notifiers.webhook import IDEMPOTENCY_HEADER
from tests.helpers import bound_port, publish, wait_until
from tests.integration.alerts.support import BIN_FULL_RULES, WebhookReceiver
from tests.servers import MosquittoServer, free_ports, wait_alerts_ready

ROOT = Path(__file__).resolve().parents[3]


def _start(
    env: dict[str, str], preexec_fn: Callable[[], object] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.alerts"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        preexec_fn=preexec_fn,
    )


def _stop(proc: subprocess.Popen[bytes], sig: int) -> bytes:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.wait(timeout=30)
    return proc.stderr.read() if proc.stderr else b""


def _journaled(outbox: Path) -> bool:
    return outbox.exists() and b'"seq"' in outbox.read_bytes()


def test_a_queued_webhook_delivery_survives_sigkill_and_is_delivered_after_restart(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    (hook_port,) = free_ports(1)  # the receiver starts late, in run 2: it must have a port
    port_file = tmp_path / "alerts.port"
    rules = tmp_path / "rules.yaml"
    rules.write_text(BIN_FULL_RULES)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "ALERTS_", "INFLUX_"))}
    env.update(
        MQTT_URL=mosquitto.url,
        MQTT_CLIENT_ID="facility-alerts-outbox-test",
        ALERTS_HTTP_PORT="0",
        HTTP_PORT_FILE=str(port_file),
        ALERTS_INFLUX_ENABLED="false",
        ALERTS_RULES_FILE=str(rules),
        ALERTS_WEBHOOK_URL=f"http://127.0.0.1:{hook_port}/hook",
        ALERTS_STATE_DIR=str(state),
        ALERTS_RETRY_BASE_S="0.2",
        ALERTS_RETRY_MAX_S="0.5",
        LOG_FORMAT="json",
    )
    procs: list[subprocess.Popen[bytes]] = []
    receiver: WebhookReceiver | None = None
    try:
        # Run 1: the receiver is down, so the firing alert can only wait in the queue.
        procs.append(_start(env))
        wait_alerts_ready(bound_port(port_file, procs[0]))
        body = {"ts": int(time.time() * 1000), "fill_pct": 95.0, "weight_kg": 30.0}
        publish(mosquitto.url, "facility/ewaste/ewaste_bin/bin-001/telemetry", json.dumps(body))
        outbox = state / "webhook.outbox"
        wait_until(lambda: _journaled(outbox), timeout=30)
        _stop(procs[0], signal.SIGKILL)

        # Run 2: the receiver is up; the delivery comes from the outbox (the alert itself is
        # restored from the broker as already firing, so it is not fired a second time).
        receiver = WebhookReceiver(hook_port).start()
        procs.append(_start(env))
        wait_until(lambda: len(receiver.requests) >= 1, timeout=30)
        wait_until(lambda: outbox.read_bytes() == b"", timeout=30)  # marked delivered
        log = _stop(procs[1], signal.SIGTERM)
        assert procs[1].returncode == 0
        assert b"reloaded undelivered items" in log

        # Duplicates (a delivery in flight at the kill) are allowed; the receiver dedupes by
        # key, and every copy of a key must carry the same body.
        by_key: dict[str, set[bytes]] = {}
        for headers, raw in receiver.requests:
            by_key.setdefault(headers.get(IDEMPOTENCY_HEADER, ""), set()).add(raw)
        assert len(by_key) == 1
        (bodies,) = by_key.values()
        assert len(bodies) == 1
        event = json.loads(next(iter(bodies)))
        assert (event["rule"], event["device_id"], event["state"]) == (
            "bin_full",
            "bin-001",
            "firing",
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if receiver is not None:
            receiver.stop()


def _metric(port: int, name: str) -> float | None:
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_alerts_queued_while_the_outbox_disk_refuses_writes_are_journaled_late_and_delivered(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    (hook_port,) = free_ports(1)  # the receiver starts in run 2
    port_file = tmp_path / "alerts.port"
    rules = tmp_path / "rules.yaml"
    rules.write_text(BIN_FULL_RULES)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "ALERTS_", "INFLUX_"))}
    env.update(
        MQTT_URL=mosquitto.url,
        MQTT_CLIENT_ID="facility-alerts-full-disk-test",
        ALERTS_HTTP_PORT="0",
        HTTP_PORT_FILE=str(port_file),
        ALERTS_INFLUX_ENABLED="false",
        ALERTS_RULES_FILE=str(rules),
        ALERTS_WEBHOOK_URL=f"http://127.0.0.1:{hook_port}/hook",
        ALERTS_STATE_DIR=str(state),
        ALERTS_RETRY_BASE_S="0.2",
        ALERTS_RETRY_MAX_S="0.5",
        LOG_FORMAT="json",
        PYTHONDONTWRITEBYTECODE="1",
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def small_disk() -> None:
        # Files may not grow past 100 bytes: less than one alert's record in the outbox.
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))

    devices = [f"bin-{n:03d}" for n in range(1, 6)]
    outbox = state / "webhook.outbox"
    procs: list[subprocess.Popen[bytes]] = []
    receiver: WebhookReceiver | None = None
    try:
        # Run 1: the receiver is down and the outbox cannot take a record.
        procs.append(_start(env, small_disk))
        port = bound_port(port_file, procs[0])
        wait_alerts_ready(port)
        for device in devices:
            body = {"ts": int(time.time() * 1000), "fill_pct": 95.0, "weight_kg": 30.0}
            topic = f"facility/ewaste/ewaste_bin/{device}/telemetry"
            publish(mosquitto.url, topic, json.dumps(body))
        queued = 'alerts_delivery_queue{notifier="webhook"}'
        wait_until(lambda: _metric(port, queued) == len(devices), timeout=30)
        assert not _journaled(outbox)
        # The disk has room again: the queue journals what it holds, without a new alert.
        resource.prlimit(procs[0].pid, resource.RLIMIT_FSIZE, (soft, hard))
        wait_until(lambda: outbox.read_bytes().count(b'"seq"') == len(devices), timeout=30)
        log = _stop(procs[0], signal.SIGTERM)
        assert f"{len(devices)} kept in the outbox for the next start, 0 lost".encode() in log

        # Run 2: the receiver is up; every alert comes from the outbox, once per key.
        port_file.unlink()
        receiver = WebhookReceiver(hook_port).start()
        procs.append(_start(env))
        wait_until(lambda: outbox.exists() and outbox.read_bytes() == b"", timeout=30)
        _stop(procs[1], signal.SIGTERM)
        delivered = {json.loads(raw)["device_id"] for _, raw in receiver.requests}
        assert delivered == set(devices)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if receiver is not None:
            receiver.stop()
