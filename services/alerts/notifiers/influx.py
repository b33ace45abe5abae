"""InfluxDB: the notifier that writes the ``alert`` measurement (and the desk's ``dispatch``
points) through a retry queue and the shared client."""

from __future__ import annotations

from typing import Unpack

from common.influx import InfluxClient
from common.lineproto import encode_lines
from common.schema import ALERT_MEASUREMENT, Point
from common.settings import CommonSettings
from common.timestamps import iso_to_ms
from services.alerts.alert_lifecycle import Transition
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.base import DeliveryError, DeliveryQueue, QueueArgs


class InfluxWriter:
    """``write(points)``: one write through the shared InfluxDB client (precision ms); raises
    DeliveryError on failure so the queue retries."""

    def __init__(self, settings: CommonSettings, timeout_s: float = 10.0) -> None:
        self.client = InfluxClient.from_settings(settings, timeout_s)

    def write(self, points: list[Point]) -> None:
        body = encode_lines(points)
        if not body:
            return
        answer = self.client.write(body)
        if answer.status is None:
            raise DeliveryError(f"InfluxDB unreachable: {answer.detail}")
        if not answer.ok:
            raise DeliveryError(f"InfluxDB answered {answer.status}: {answer.detail[:200]}")

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

    def __init__(
        self, writer: InfluxWriter, metrics: AlertsMetrics, **queue_args: Unpack[QueueArgs]
    ) -> None:
        self.writer = writer
        self.queue = DeliveryQueue(self.name, self._deliver, metrics, **queue_args)

    def _deliver(self, payload: object) -> None:
        assert isinstance(payload, list)  # queued by write_points/notify as a list of points
        self.writer.write(payload)

    def notify(self, transition: Transition) -> None:
        if transition.notifies_people and not transition.repeat:
            self.queue.put([alert_point(transition)])

    def write_points(self, points: list[Point]) -> None:
        if points:
            self.queue.put(list(points))

    def close(self, timeout: float) -> None:
        self.queue.close(timeout)
        self.writer.close()
