"""A webhook delivery queued while the receiver is down survives SIGKILL of facility-alerts:
the next start reloads it from the outbox and delivers it (once per idempotency key). Alerts
queued while the outbox's disk refuses writes (RLIMIT_FSIZE: a short write, then EFBIG, as a
full disk's short write then ENOSPC) are journaled once it has room and delivered after a
restart, and the shutdown log counts them truly."""

from __future__ import annotations

import json
import resource
import signal
from pathlib import Path

from services.alerts.notifiers.webhook import IDEMPOTENCY_HEADER
from tests.helpers import bound_port, wait_until
from tests.integration.alerts.support import (
    AlertsRun,
    WebhookReceiver,
    alerts_run,
    metric,
    publish_full_bin,
)
from tests.servers import MosquittoServer, free_ports, wait_alerts_ready


def _outbox_run(
    tmp_path: Path, mosquitto: MosquittoServer, client_id: str, **settings: str
) -> tuple[AlertsRun, int]:
    """facility-alerts delivering to a webhook on a port of its own, and that port: the
    receiver starts late, in run 2, so it must have its port before run 1."""
    (hook_port,) = free_ports(1)
    run = alerts_run(
        tmp_path,
        mosquitto.url,
        client_id,
        ALERTS_INFLUX_ENABLED="false",
        ALERTS_WEBHOOK_URL=f"http://127.0.0.1:{hook_port}/hook",
        ALERTS_RETRY_BASE_S="0.2",
        ALERTS_RETRY_MAX_S="0.5",
        LOG_FORMAT="json",
        **settings,
    )
    return run, hook_port


def _journaled(outbox: Path) -> bool:
    return outbox.exists() and b'"seq"' in outbox.read_bytes()


def test_a_queued_webhook_delivery_survives_sigkill_and_is_delivered_after_restart(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    run, hook_port = _outbox_run(tmp_path, mosquitto, "facility-alerts-outbox-test")
    outbox = run.state / "webhook.outbox"
    try:
        # Run 1: the receiver is down, so the firing alert can only wait in the queue.
        first = run.start(capture_stderr=True)
        wait_alerts_ready(bound_port(run.port_file, first))
        publish_full_bin(mosquitto.url, "bin-001")
        wait_until(lambda: _journaled(outbox), timeout=30)
        run.stop(first, signal.SIGKILL)

        # Run 2: the receiver is up; the delivery comes from the outbox (the alert itself is
        # restored from the broker as already firing, so it is not fired a second time).
        with WebhookReceiver(hook_port) as receiver:
            second = run.start(capture_stderr=True)
            wait_until(lambda: len(receiver.requests) >= 1, timeout=30)
            wait_until(lambda: outbox.read_bytes() == b"", timeout=30)  # marked delivered
            log = run.stop(second, signal.SIGTERM)
        assert second.returncode == 0
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
        run.kill_all()


def test_alerts_queued_while_the_outbox_disk_refuses_writes_are_journaled_late_and_delivered(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    run, hook_port = _outbox_run(
        tmp_path, mosquitto, "facility-alerts-full-disk-test", PYTHONDONTWRITEBYTECODE="1"
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def small_disk() -> None:
        # Files may not grow past 100 bytes: less than one alert's record in the outbox.
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))

    devices = [f"bin-{n:03d}" for n in range(1, 6)]
    outbox = run.state / "webhook.outbox"
    try:
        # Run 1: the receiver is down and the outbox cannot take a record.
        first = run.start(capture_stderr=True, preexec_fn=small_disk)
        port = bound_port(run.port_file, first)
        wait_alerts_ready(port)
        for device in devices:
            publish_full_bin(mosquitto.url, device)
        queued = 'alerts_delivery_queue{notifier="webhook"}'
        wait_until(lambda: metric(port, queued) == len(devices), timeout=30)
        assert not _journaled(outbox)
        # The disk has room again: the queue journals what it holds, without a new alert.
        resource.prlimit(first.pid, resource.RLIMIT_FSIZE, (soft, hard))
        wait_until(lambda: outbox.read_bytes().count(b'"seq"') == len(devices), timeout=30)
        log = run.stop(first, signal.SIGTERM)
        assert f"{len(devices)} kept in the outbox for the next start, 0 lost".encode() in log

        # Run 2: the receiver is up; every alert comes from the outbox, once per key.
        run.port_file.unlink()
        with WebhookReceiver(hook_port) as receiver:
            second = run.start(capture_stderr=True)
            wait_until(lambda: outbox.exists() and outbox.read_bytes() == b"", timeout=30)
            run.stop(second, signal.SIGTERM)
        delivered = {json.loads(raw)["device_id"] for _, raw in receiver.requests}
        assert delivered == set(devices)
    finally:
        run.kill_all()
