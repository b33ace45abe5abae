"""JSON messages programs exchange besides telemetry: alerts, dispatches, dead letters.

The alerts service writes alerts and dispatch requests, the simulator's trucks read dispatch
requests and write dispatch status, the ingest writes dead letters; all of them use these models.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.timestamps import utc_now_iso

__all__ = [
    "DEADLETTER_EXCERPT_BYTES",
    "AlertEvent",
    "AlertState",
    "DeadLetter",
    "DispatchRequest",
    "DispatchState",
    "DispatchStatus",
    "DispatchStop",
    "Severity",
]

AlertState = Literal["pending", "firing", "resolved"]
Severity = Literal["info", "warning", "critical"]
DispatchState = Literal["planned", "en_route", "completed", "cancelled"]


class _Message(BaseModel):
    # Readers ignore fields they do not know, so writers may add fields without breaking them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class AlertEvent(_Message):
    """Published on ``P/alerts/{rule}/{site}/{device_id}`` at every transition, and retained
    on ``P/alerts/active/...`` while firing."""

    rule: str
    severity: Severity
    site: str
    device_id: str
    kind: str | None = None
    state: AlertState
    value: float | None = None
    threshold: float | None = None
    message: str
    ts: str = Field(description="event time of the transition, RFC 3339")
    started_at: str | None = Field(default=None, description="when the alert began firing")
    labels: dict[str, str] = Field(default_factory=dict)


class DispatchStop(_Message):
    device_id: str
    site: str = "ewaste"
    latitude: float
    longitude: float
    fill_pct: float | None = None
    est_weight_kg: float = 0.0
    weight_estimated: bool = False
    """True when the bin reports no weight: ``est_weight_kg`` is its fill x volume x bulk
    density (or x capacity), an estimate to show as such."""


class DispatchRequest(_Message):
    """Published on ``P/dispatch/requests``: one truck, one zone, stops in driving order."""

    dispatch_id: str
    truck_id: str
    zone: str
    stops: list[DispatchStop]
    est_load_kg: float
    route_km: float
    reason: str = ""
    created_at: str = Field(default_factory=utc_now_iso)
    depot_latitude: float | None = None
    depot_longitude: float | None = None


class DispatchStatus(_Message):
    """Retained on ``P/dispatch/{dispatch_id}/status``."""

    dispatch_id: str
    state: DispatchState
    truck_id: str | None = None
    zone: str | None = None
    ts: str = Field(default_factory=utc_now_iso)
    collected_kg: float | None = None
    stops_done: list[str] = Field(default_factory=list)
    message: str = ""


DEADLETTER_EXCERPT_BYTES: Final = 1024
"""At most this much of a rejected payload (and of its topic and reason) goes into a dead
letter: a huge message must not come back as a huge dead letter. Its length and SHA-256 say
which message it was."""


class DeadLetter(_Message):
    """Published on ``P/deadletter/{program}``: the rejected message (an excerpt) and why."""

    topic: str
    payload: str = Field(description="the first DEADLETTER_EXCERPT_BYTES of the payload")
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    payload_bytes: int | None = Field(default=None, description="the whole payload's length")
    payload_sha256: str | None = Field(default=None, description="of the whole payload, hex")
    payload_truncated: bool = False
    reason: str
    code: str
    received_at: str
    program: str

    @classmethod
    def build(
        cls, program: str, topic: str, raw: bytes, code: str, reason: str, received_at: str
    ) -> DeadLetter:
        excerpt = raw[:DEADLETTER_EXCERPT_BYTES]
        encoding: Literal["utf-8", "base64"]
        try:
            text, encoding = _utf8_excerpt(excerpt, cut=len(excerpt) < len(raw)), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(excerpt).decode("ascii"), "base64"
        return cls(
            topic=_cut(topic),
            payload=text,
            payload_encoding=encoding,
            payload_bytes=len(raw),
            payload_sha256=hashlib.sha256(raw).hexdigest(),
            payload_truncated=len(excerpt) < len(raw),
            reason=_cut(reason),
            code=code,
            received_at=received_at,
            program=program,
        )

    def raw_payload(self) -> bytes:
        """The payload as carried: the whole of it unless ``payload_truncated``."""
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8")


def _utf8_excerpt(excerpt: bytes, *, cut: bool) -> str:
    """Decode; when the excerpt was cut, a character split by the cut is dropped, not blamed."""
    try:
        return excerpt.decode("utf-8")
    except UnicodeDecodeError as exc:
        if cut and exc.end == len(excerpt) and len(excerpt) - exc.start < 4:
            return excerpt[: exc.start].decode("utf-8")
        raise


def _cut(text: str) -> str:
    return (
        text if len(text) <= DEADLETTER_EXCERPT_BYTES else text[:DEADLETTER_EXCERPT_BYTES] + "..."
    )
