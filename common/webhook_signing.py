"""Signed webhook deliveries in the Standard Webhooks scheme (as Svix signs them): the sender
signs ``{id}.{timestamp}.{body}`` with HMAC-SHA256; a receiver checks the signature, rejects a
timestamp outside its tolerance and an id it has already seen. Standard library only (plus
:class:`Rejection`), so a receiver can copy :func:`verify`."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, MutableMapping

from common.payloads import Rejection

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
DEFAULT_TOLERANCE_S = 300
_VERSION = "v1"


def signature(secret: bytes, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return f"{_VERSION},{base64.b64encode(digest).decode()}"


def sign(secret: bytes, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one delivery attempt (``timestamp``: Unix seconds, now)."""
    return {
        ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, delivery_id, timestamp, body),
    }


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    seen_ids: MutableMapping[str, int] | None = None,
) -> str | Rejection:
    """The delivery id of an authentic, fresh, first-seen delivery, else why it is refused.

    ``body`` is the raw request body (before any JSON parsing). ``seen_ids`` (id -> its
    timestamp) remembers accepted ids; entries older than the tolerance are dropped from it,
    because their timestamp alone rejects them now. Codes: ``missing_header``,
    ``bad_timestamp``, ``too_old``, ``too_new``, ``bad_signature``, ``replayed``.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    delivery_id = lower.get(ID_HEADER, "")
    stamp = lower.get(TIMESTAMP_HEADER, "")
    signatures = lower.get(SIGNATURE_HEADER, "")
    if not (delivery_id and stamp and signatures):
        return Rejection(
            "missing_header", f"needs {ID_HEADER}, {TIMESTAMP_HEADER}, {SIGNATURE_HEADER}"
        )
    if not stamp.isdigit():
        return Rejection("bad_timestamp", f"{TIMESTAMP_HEADER} is not Unix seconds: {stamp[:20]!r}")
    timestamp = int(stamp)
    if timestamp < now - tolerance_s:
        return Rejection(
            "too_old", f"sent {int(now) - timestamp} s ago (tolerance {tolerance_s} s)"
        )
    if timestamp > now + tolerance_s:
        return Rejection(
            "too_new", f"dated {timestamp - int(now)} s ahead (tolerance {tolerance_s} s)"
        )
    expected = signature(secret, delivery_id, timestamp, body)
    # Space-separated "v1,<sig>" entries: more than one while the sender rotates its secret.
    if not any(hmac.compare_digest(expected, given) for given in signatures.split()):
        return Rejection("bad_signature", "no signature matches the id, timestamp and body")
    if seen_ids is not None:
        for old in [key for key, ts in seen_ids.items() if ts < now - tolerance_s]:
            del seen_ids[old]
        first = delivery_id not in seen_ids
        # A signed copy dated later keeps the id remembered until that copy is too old too.
        seen_ids[delivery_id] = max(timestamp, seen_ids.get(delivery_id, timestamp))
        if not first:
            return Rejection("replayed", f"delivery {delivery_id} was already accepted")
    return delivery_id
