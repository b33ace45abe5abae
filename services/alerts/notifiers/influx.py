"""InfluxDB: a small line-protocol HTTP writer (API v1 or v2, httpx) and the notifier that
writes the ``alert`` measurement (and the desk's ``dispatch`` points) through a retry queue."""

from __future__ import annotations

import httpx

from common.lineproto import encode_lines
from common.schema import ALERT_MEASUREMENT, Point
from common.settings import CommonSettings
from common.timestamps import iso_to_ms
from services.alerts.alert_lifecycle import Transition
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.base import DeliveryError, DeliveryQueue


class InfluxWriter:
    """``write(points)``: one POST, precision ms; raises DeliveryError on failure."""

    def __init__(self, settings: CommonSettings, timeout_s: float = 10.0) -> None:
        self.settings = settings
        token = settings.influx_token.get_secret_value() if settings.influx_token else None
        params: dict[str, str] = {"precision": "ms"}
        headers: dict[str, str] = {"Content-Type": "text/plain; charset=utf-8"}
        if settings.influx_api_version == "2":
            self.path = "/api/v2/write"
            params |= {"org": settings.influx_org, "bucket": settings.influx_bucket}
            if token:
                headers["Authorization"] = f"Token {token}"
        else:
            self.path = "/write"
            params["db"] = settings.influx_bucket
            if token and ":" in token:
                params["u"], params["p"] = token.split(":", 1)
        self.client = httpx.Client(
            base_url=settings.influx_url, params=params, headers=headers, timeout=timeout_s
        )

    def write(self, points: list[Point]) -> None:
        body = encode_lines(points)
        if not body:
            return
        try:
            response = self.client.post(self.path, content=body)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"InfluxDB unreachable: {exc}") from exc
        if response.status_code >= 300:
            raise DeliveryError(f"InfluxDB answered {response.status_code}: {response.text[:200]}")

    def close(self) -> None:
        self.client.close()


def alert_point(transition: Transition) -> Point:
    event = transition.event
    tags = {
        "rule": event.rule,
        "severity": event.severity,
        "site": event.site,
        "device_id": event.device_id,
    }
    fields: dict[str, float | int | bool | str] = {"state": event.state, "message": event.message}
    if event.value is not None:
        fields["value"] = float(event.value)
    if event.threshold is not None:
        fields["threshold"] = float(event.threshold)
    return ALERT_MEASUREMENT, tags, fields, iso_to_ms(event.ts)


class InfluxNotifier:
    name = "influx"

    def __init__(self, writer: InfluxWriter, metrics: AlertsMetrics, **queue_args: float) -> None:
        self.writer = writer
        self.queue = DeliveryQueue(self.name, self._deliver, metrics, **queue_args)  # type: ignore[arg-type]

    def _deliver(self, payload: object) -> None:
        self.writer.write(payload)  # type: ignore[arg-type]

    def notify(self, transition: Transition) -> None:
        if transition.notifies_people and not transition.repeat:
            self.queue.put([alert_point(transition)])

    def write_points(self, points: list[Point]) -> None:
        if points:
            self.queue.put(list(points))

    def close(self, timeout: float) -> None:
        self.queue.close(timeout)
        self.writer.close()
