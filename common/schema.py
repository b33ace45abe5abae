"""The InfluxDB schema of the contract: which measurement, tags and fields a message becomes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from common.messages import DispatchRequest
from common.payloads import STATUS_MEASUREMENT, Reading, StatusReading

Point = tuple[str, dict[str, str], dict[str, float | int | bool | str], int]
"""``(measurement, tags, fields, ts_ms)`` as ``common.lineproto`` encodes it."""

ALERT_MEASUREMENT: Final = "alert"
DISPATCH_MEASUREMENT: Final = "dispatch"
COLLECTION_MEASUREMENT: Final = "collection"
COLLECTION_TAGS: Final = ("zone", "residential_type")
"""Registry tags a ``collection`` point copies from the bin (the dashboards group by them)."""


def reading_point(reading: Reading, extra_tags: Mapping[str, str] | None = None) -> Point:
    """A telemetry reading as a point; ``extra_tags`` come from the registry (zone, ...)."""
    tags = {"site": reading.site, "device_id": reading.device_id}
    if extra_tags:
        tags.update(extra_tags)
    return reading.measurement, tags, dict(reading.fields), reading.ts_ms


def status_point(status: StatusReading) -> Point:
    tags = {"site": status.site, "kind": status.kind, "device_id": status.device_id}
    return STATUS_MEASUREMENT, tags, {"online": status.online}, status.ts_ms


ROUTE_MEASUREMENT: Final = "dispatch_stop"
DEPOT_STOP: Final = "depot"


def route_points(request: DispatchRequest, ts_ms: int) -> list[Point]:
    """A planned dispatch's route, one point per stop in driving order, for the map: the depot
    first and last (when the request names it), the bins between. Stop ``n`` is stamped
    ``ts_ms + n`` so the points of one route stay distinct and sort in driving order."""
    places = [(s.device_id, s.latitude, s.longitude) for s in request.stops]
    if request.depot_latitude is not None and request.depot_longitude is not None:
        depot = (DEPOT_STOP, request.depot_latitude, request.depot_longitude)
        places = [depot, *places, depot]
    tags = {"zone": request.zone, "truck_id": request.truck_id}
    return [
        (
            ROUTE_MEASUREMENT,
            dict(tags),
            {
                "dispatch_id": request.dispatch_id,
                "stop": n,
                "device_id": device_id,
                "latitude": float(latitude),
                "longitude": float(longitude),
            },
            ts_ms + n,
        )
        for n, (device_id, latitude, longitude) in enumerate(places)
    ]


def collection_point(
    site: str,
    device_id: str,
    registry_tags: Mapping[str, str],
    kg: float,
    ts_ms: int,
    *,
    weight_estimated: bool = False,
    dispatch_id: str | None = None,
) -> Point:
    """One emptied bin, stamped with the reading that showed the emptying (event time), so a
    replay or backfill of the same readings rewrites the same point instead of adding one."""
    tags = {"site": site, "device_id": device_id}
    tags.update({k: registry_tags[k] for k in COLLECTION_TAGS if k in registry_tags})
    fields: dict[str, float | int | bool | str] = {
        "kg": float(kg),
        "weight_estimated": weight_estimated,
    }
    if dispatch_id is not None:
        fields["dispatch_id"] = dispatch_id
    return COLLECTION_MEASUREMENT, tags, fields, ts_ms
