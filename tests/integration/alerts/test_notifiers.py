"""Notifiers against local HTTP servers (loopback): the webhook retries a failing receiver
until it answers, with a stable idempotency key and a valid signature; the real facility-alerts
signs its deliveries so a receiver rejects replayed, stale and altered copies; apprise groups."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import webhook_signing
from common.payloads import Rejection
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.apprise import AppriseNotifier, destination_name
from services.alerts.notifiers.outbox import Outbox
from services.alerts.notifiers.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    JsonPoster,
    WebhookNotifier,
)
from tests.helpers import bound_port, wait_until
from tests.integration.alerts.support import (
    BIN_FULL_RULES,
    WebhookReceiver,
    alerts_run,
    publish_full_bin,
)
from tests.servers import MosquittoServer, wait_alerts_ready
from tests.unit.alerts.helpers import MIN, T0, bin_reading, engine


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(fail_first=getattr(request, "param", 0)) as server:
        yield server


@pytest.mark.parametrize("receiver", [2], indirect=True)
def test_webhook_retries_a_failing_receiver_until_delivered(receiver: WebhookReceiver) -> None:
    metrics = AlertsMetrics()
    secret = b"s3cret"
    hook = WebhookNotifier(
        "webhook", JsonPoster(receiver.url, secret), metrics, base_s=0.05, max_s=0.2
    )
    eng = engine(BIN_FULL_RULES)
    fired = eng.handle(bin_reading("bin-001", T0, 95))
    resolved = eng.handle(bin_reading("bin-001", T0 + MIN, 10))
    for transition in fired + resolved:
        hook.notify(transition)
    wait_until(lambda: len(receiver.requests) >= 4, timeout=20)
    hook.close(timeout=5)

    bodies = [json.loads(body) for _, body in receiver.requests]
    # The first delivery failed twice and was retried; nothing was dropped or reordered away.
    assert [b["state"] for b in bodies] == ["firing", "firing", "firing", "resolved"]
    firing_keys = {h[IDEMPOTENCY_HEADER] for h, b in receiver.requests if b"firing" in b}
    assert len(firing_keys) == 1  # the retries carry the same idempotency key
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER] == expected
    failed = metrics.registry.get_sample_value(
        "alerts_deliveries_total", {"notifier": "webhook", "outcome": "failed"}
    )
    delivered = metrics.registry.get_sample_value(
        "alerts_deliveries_total", {"notifier": "webhook", "outcome": "delivered"}
    )
    assert (failed, delivered) == (2.0, 2.0)


@pytest.mark.parametrize("receiver", [2], indirect=True)
def test_webhook_retries_keep_the_delivery_id_and_sign_each_attempt_with_its_own_time(
    receiver: WebhookReceiver,
) -> None:
    secret = b"s3cret"
    clock = itertools.count(1_700_000_000, 7)  # each attempt reads the clock once
    poster = JsonPoster(receiver.url, secret, clock=lambda: float(next(clock)))
    hook = WebhookNotifier("webhook", poster, AlertsMetrics(), base_s=0.05, max_s=0.2)
    for transition in engine(BIN_FULL_RULES).handle(bin_reading("bin-001", T0, 95)):
        hook.notify(transition)
    wait_until(lambda: len(receiver.requests) >= 3, timeout=20)
    hook.close(timeout=5)

    attempts = receiver.requests[:3]
    ids = {h[webhook_signing.ID_HEADER] for h, _ in attempts}
    assert ids == {attempts[0][0][IDEMPOTENCY_HEADER]}  # the id is the idempotency key
    stamps = [int(h[webhook_signing.TIMESTAMP_HEADER]) for h, _ in attempts]
    assert stamps == [1_700_000_000, 1_700_000_007, 1_700_000_014]
    (delivery_id,) = ids
    for (headers, body), stamp in zip(attempts, stamps, strict=True):
        assert webhook_signing.verify(secret, headers, body, now=stamp) == delivery_id


def test_real_alerts_deliveries_verify_once_and_replayed_stale_or_altered_copies_are_refused(
    mosquitto: MosquittoServer, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    secret = "a-webhook-secret-from-make-env"
    run = alerts_run(
        tmp_path,
        mosquitto.url,
        "facility-alerts-signing-test",
        ALERTS_INFLUX_ENABLED="false",
        ALERTS_WEBHOOK_URL=receiver.url,
        ALERTS_WEBHOOK_SECRET=secret,
    )
    proc = run.start()
    try:
        wait_alerts_ready(bound_port(run.port_file, proc))
        before = int(time.time())
        publish_full_bin(mosquitto.url, "bin-001")
        wait_until(lambda: len(receiver.requests) >= 1, timeout=30)
    finally:
        run.stop(proc, signal.SIGTERM)
    headers, body = receiver.requests[0]
    assert json.loads(body)["state"] == "firing"
    stamp = int(headers[webhook_signing.TIMESTAMP_HEADER])
    assert before <= stamp <= int(time.time())
    assert headers[webhook_signing.SIGNATURE_HEADER].startswith("v1,")

    key, now = secret.encode(), time.time()
    seen: dict[str, int] = {}
    accepted = webhook_signing.verify(key, headers, body, now, seen_ids=seen)
    assert accepted == headers[IDEMPOTENCY_HEADER] == headers[webhook_signing.ID_HEADER]

    def refused(
        got_headers: dict[str, str], got_body: bytes, at: float, seen_ids: dict[str, int]
    ) -> str:
        result = webhook_signing.verify(key, got_headers, got_body, at, seen_ids=seen_ids)
        assert isinstance(result, Rejection), result
        return result.code

    assert refused(headers, body, now + 1, seen) == "replayed"
    # Captured and replayed after the tolerance: refused even by a receiver that forgot the id.
    late = stamp + webhook_signing.DEFAULT_TOLERANCE_S + 1
    assert refused(headers, body, late, {}) == "too_old"
    altered = body.replace(b'"firing"', b'"resolved"')
    assert altered != body
    assert refused(headers, altered, now, {}) == "bad_signature"
    assert webhook_signing.verify(b"another-secret", headers, body, now) == Rejection(
        "bad_signature", "no signature matches the id, timestamp and body"
    )


def test_apprise_groups_an_incident_across_thirty_bins_into_one_message(
    receiver: WebhookReceiver,
) -> None:
    url = receiver.url.replace("http://", "json://")
    notifier = AppriseNotifier([url], group_s=60, metrics=AlertsMetrics(), base_s=0.05)
    eng = engine(BIN_FULL_RULES)
    for i in range(1, 31):
        for transition in eng.handle(bin_reading(f"bin-{i:03d}", T0, 95)):
            notifier.notify(transition)
    notifier.close(timeout=10)  # flushes the group now instead of after 60 s
    assert len(receiver.requests) == 1
    message = json.loads(receiver.requests[0][1])
    assert "30 firing: 30 x bin_full" in message["title"]
    assert message["message"].count("bin_full") == 30


def test_apprise_retries_only_the_failing_channel_and_the_healthy_one_gets_one_post_per_alert(
    tmp_path: Path,
) -> None:
    with WebhookReceiver() as healthy, WebhookReceiver(fail_first=10**6) as failing:
        urls = [r.url.replace("http://", "json://") for r in (healthy, failing)]
        metrics = AlertsMetrics()
        notifier = AppriseNotifier(
            urls,
            group_s=0.01,
            metrics=metrics,
            outbox=Outbox(tmp_path / "apprise.outbox"),
            base_s=0.02,
            max_s=0.05,
        )
        eng = engine(BIN_FULL_RULES)
        for device in ("bin-001", "bin-002"):  # two alerts, two grouping windows
            for transition in eng.handle(bin_reading(device, T0, 95)):
                notifier.notify(transition)
            wait_until(lambda: len(failing.requests) >= 3)  # retried a few times meanwhile
        notifier.close(timeout=0.2)
        assert [json.loads(body)["title"] for _, body in healthy.requests] == [
            "[facility] 1 firing: 1 x bin_full",
            "[facility] 1 firing: 1 x bin_full",
        ]
        assert len(failing.requests) >= 3
    failing_name = destination_name(urls[1])
    failed = metrics.registry.get_sample_value(
        "alerts_deliveries_total", {"notifier": failing_name, "outcome": "failed"}
    )
    assert failed is not None and failed >= 3
    # Only the failing channel's two messages wait for the next start, in its own outbox.
    assert len(Outbox(tmp_path / f"{failing_name}.outbox").pending) == 2
    assert Outbox(tmp_path / f"{destination_name(urls[0])}.outbox").pending == []


def test_apprise_hands_what_the_shared_outbox_kept_to_every_channel(tmp_path: Path) -> None:
    shared = Outbox(tmp_path / "apprise.outbox")
    shared.append("k", ["[facility] 1 firing: 1 x bin_full", "left by the last run"])
    shared.close()
    with WebhookReceiver() as first, WebhookReceiver() as second:
        urls = [r.url.replace("http://", "json://") for r in (first, second)]
        notifier = AppriseNotifier(
            urls, group_s=60, metrics=AlertsMetrics(), outbox=Outbox(shared.path), base_s=0.05
        )
        notifier.close(timeout=10)
        for receiver in (first, second):
            (request,) = receiver.requests
            assert json.loads(request[1])["message"] == "left by the last run"
    assert Outbox(shared.path).pending == []
