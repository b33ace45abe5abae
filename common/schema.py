"""The InfluxDB schema of the contract: which measurement, tags and fields a message becomes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from common.payloads import STATUS_MEASUREMENT, Reading, StatusReading

Point = tuple[str, dict[str, str], dict[str, float | int | bool | str], int]
"""``(measurement, tags, fields, ts_ms)`` as ``common.lineproto`` encodes it."""

ALERT_MEASUREMENT: Final = "alert"
DISPATCH_MEASUREMENT: Final = "dispatch"


def reading_point(reading: Reading, extra_tags: Mapping[str, str] | None = None) -> Point:
    """A telemetry reading as a point; ``extra_tags`` come from the registry (zone, ...)."""
    tags = {"site": reading.site, "device_id": reading.device_id}
    if extra_tags:
        tags.update(extra_tags)
    return reading.measurement, tags, dict(reading.fields), reading.ts_ms


def status_point(status: StatusReading) -> Point:
    tags = {"site": status.site, "kind": status.kind, "device_id": status.device_id}
    return STATUS_MEASUREMENT, tags, {"online": status.online}, status.ts_ms
