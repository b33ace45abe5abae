"""Notifiers against local HTTP servers (loopback): the webhook retries a failing receiver
until it answers, with a stable idempotency key and a valid signature; apprise groups."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest

from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.apprise import AppriseNotifier
from services.alerts.notifiers.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    JsonPoster,
    WebhookNotifier,
)
from tests.helpers import wait_until
from tests.integration.alerts.support import BIN_FULL_RULES, WebhookReceiver
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
