"""InfluxDB: the notifier that writes the ``alert`` measurement (and the desk's ``dispatch``
points) through a retry queue and the shared client. A write the database refuses for good
(400, 413, 422, ...) is dead-lettered and counted instead of retried, so it never holds back
the points after it; no answer, 429, 5xx and the database's own set-up errors (401, 403,
404, 408) are retried."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Unpack

from common.influx import InfluxClient
from common.lineproto import encode_lines
from common.messages import DeadLetter
from common.schema import ALERT_MEASUREMENT, Point
from common.settings import CommonSettings
from common.timestamps import iso_to_ms, ms_to_iso
from services.alerts.alert_lifecycle import Transition
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.base import DeliveryError, DeliveryQueue, QueueArgs, Undeliverable

log = logging.getLogger(__name__)

DEADLETTER_PROGRAM = "alerts"
INFLUX_REFUSED = "influx_refused"
"""The dead-letter code of points InfluxDB refused for good."""

# Refusals about the database or the moment, not the points: a person or time fixes them.
RETRIED_CLIENT_ERRORS = frozenset({401, 403, 404, 408, 429})


def refused_for_good(status: int) -> bool:
    """Would the same write be refused again, whatever the database's state?"""
    return 400 <= status < 500 and status not in RETRIED_CLIENT_ERRORS


class PointsRefused(Undeliverable):
    """InfluxDB refused these points for good; ``body`` is the line protocol it was sent."""

    def __init__(self, status: int, detail: str, body: bytes) -> None:
        super().__init__(f"InfluxDB answered {status}: {detail[:300]}")
        self.status = status
        self.body = body


class InfluxWriter:
    """``write(points)``: one write through the shared InfluxDB client (precision ms); raises
    PointsRefused when InfluxDB refuses it for good, DeliveryError on any other failure."""

    def __init__(self, settings: CommonSettings, timeout_s: float = 10.0) -> None:
        self.client = InfluxClient.from_settings(settings, timeout_s)

    def write(self, points: list[Point]) -> None:
        body = encode_lines(points)
        if not body:
            return
        answer = self.client.write(body)
        if answer.status is None:
            raise DeliveryError(f"InfluxDB unreachable: {answer.detail}")
        if answer.ok:
            return
        if refused_for_good(answer.status):
            raise PointsRefused(answer.status, answer.detail, body)
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
    """``dead_letter`` gets a DeadLetter (program ``alerts``, code ``influx_refused``, the
    refused line protocol as payload, topic empty) for each write InfluxDB refused for good."""

    name = "influx"

    def __init__(
        self,
        writer: InfluxWriter,
        metrics: AlertsMetrics,
        dead_letter: Callable[[DeadLetter], None] | None = None,
        **queue_args: Unpack[QueueArgs],
    ) -> None:
        self.writer = writer
        self.dead_letter = dead_letter
        self.queue = DeliveryQueue(
            self.name, self._deliver, metrics, on_refused=self._refused, **queue_args
        )

    def _refused(self, _payload: object, exc: Undeliverable) -> None:
        assert isinstance(exc, PointsRefused)
        letter = DeadLetter.build(
            DEADLETTER_PROGRAM,
            "",
            exc.body,
            INFLUX_REFUSED,
            str(exc),
            ms_to_iso(time.time_ns() // 1_000_000),
        )
        log.error(
            "InfluxDB refused points for good; dead-lettered",
            extra={
                "status": exc.status,
                "reason": str(exc),
                "line": exc.body[:200].decode("utf-8", "replace"),
            },
        )
        if self.dead_letter is not None:
            self.dead_letter(letter)

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
