"""Sends a rendered report: to apprise URLs with the PDF attached, and to a webhook as JSON
(figures plus the PDF in base64), signed like the alerts' webhooks when a secret is set."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import apprise
import httpx

from common import webhook_signing
from common.redact import redact_url


class SendError(Exception):
    """A destination did not take the report."""


def by_apprise(urls: list[str], title: str, body: str, attachment: Path) -> None:
    """One notification per URL, so one failing channel does not hide the others."""
    failed = []
    for url in urls:
        channel = apprise.Apprise()
        if not channel.add(url):
            failed.append(f"{redact_url(url)} (not an apprise URL)")
            continue
        if not channel.notify(title=title, body=body, attach=str(attachment)):
            failed.append(redact_url(url))
    if failed:
        raise SendError("apprise could not deliver to " + ", ".join(failed))


def by_webhook(
    url: str, summary: dict[str, object], pdf: Path, secret: bytes | None, timeout_s: float = 30
) -> None:
    body = {
        **summary,
        "attachment": {
            "name": pdf.name,
            "content_type": "application/pdf",
            "data_base64": base64.b64encode(pdf.read_bytes()).decode(),
        },
    }
    raw = json.dumps(body, sort_keys=True).encode()
    key = hashlib.sha256(raw).hexdigest()[:32]
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    if secret:
        headers.update(webhook_signing.sign(secret, key, int(time.time()), raw))
    try:
        response = httpx.post(url, content=raw, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise SendError(f"webhook {redact_url(url)} unreachable: {exc}") from exc
    if response.status_code >= 300:
        raise SendError(f"webhook {redact_url(url)} answered {response.status_code}")
