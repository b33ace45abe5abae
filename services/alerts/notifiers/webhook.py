"""HTTP webhook: the alert as JSON, retried with backoff from a queue until delivered. Each
attempt is signed in the Standard Webhooks scheme (``common.webhook_signing``: delivery id =
the idempotency key, stable across retries; timestamp = the attempt's time), and the body alone
as ``X-Facility-Signature`` for receivers written before that."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Unpack

import httpx

from common import webhook_signing
from services.alerts.alert_lifecycle import Transition
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.base import DeliveryError, DeliveryQueue, QueueArgs
from services.alerts.notifiers.outbox import Outbox

SIGNATURE_HEADER = "X-Facility-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: bytes, body: bytes) -> str:
    """``X-Facility-Signature``: the body alone (no timestamp or id, so replayable; kept for
    receivers that check only this header)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def idempotency_key(body: dict[str, object]) -> str:
    """Same transition -> same key, so a receiver can drop the duplicates retries cause."""
    parts = [str(body.get(k)) for k in ("rule", "site", "device_id", "state", "ts", "dispatch_id")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


class JsonPoster:
    """POSTs JSON bodies to one URL; raises DeliveryError unless the answer is 2xx."""

    def __init__(
        self,
        url: str,
        secret: bytes | None,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.secret = secret
        self.clock = clock
        self.client = httpx.Client(timeout=timeout_s)

    def post(self, body: dict[str, object]) -> None:
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        key = idempotency_key(body)
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, raw)
            headers.update(webhook_signing.sign(self.secret, key, int(self.clock()), raw))
        try:
            response = self.client.post(self.url, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook unreachable: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"webhook answered {response.status_code}")

    def close(self) -> None:
        self.client.close()


class WebhookNotifier:
    """Alerts (firing, repeats, resolved-after-firing) to a webhook."""

    def __init__(
        self,
        name: str,
        poster: JsonPoster,
        metrics: AlertsMetrics,
        outbox: Outbox | None = None,
        **queue_args: Unpack[QueueArgs],
    ) -> None:
        self.name = name
        self.poster = poster
        self.queue = DeliveryQueue(
            name,
            self._deliver,
            metrics,
            outbox=outbox,
            key=self._key,
            **queue_args,
        )

    @staticmethod
    def _key(payload: object) -> str:
        assert isinstance(payload, dict)
        return idempotency_key(payload)

    def _deliver(self, payload: object) -> None:
        assert isinstance(payload, dict)  # a JSON object: queued as one, reloaded as one
        self.poster.post(payload)

    def notify(self, transition: Transition) -> None:
        if transition.notifies_people:
            body = transition.event.model_dump(mode="json")
            body["repeat"] = transition.repeat
            self.queue.put(body)

    def send(self, body: dict[str, object]) -> None:
        """Any other JSON (e.g. a dispatch request) through the same queue."""
        self.queue.put(body)

    def close(self, timeout: float) -> None:
        self.queue.close(timeout)
        self.poster.close()
