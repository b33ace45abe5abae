"""InfluxDB sink (API v1 or v2): the shared ``common.influx`` client does the HTTP; this maps
its answers onto the pipeline's outcomes with ``classify``."""

from __future__ import annotations

import logging

from common.influx import Answer, InfluxClient, InfluxError
from services.ingest.retry import parse_retry_after
from services.ingest.sinks.base import STORED, Outcome, WriteResult, classify

log = logging.getLogger(__name__)


def _result(answer: Answer) -> WriteResult:
    if answer.status is None:
        return WriteResult(Outcome.RETRY, None, answer.detail[:500])
    return classify(answer.status, answer.detail, parse_retry_after(answer.retry_after))


class InfluxSink:
    """Writes to a 1.x database (``influx1``) or a 2.x/3.x/Cloud bucket (``influx2``)."""

    def __init__(self, client: InfluxClient) -> None:
        self.client = client
        self.name = f"influx{client.api_version}"

    def write(self, lines: bytes) -> WriteResult:
        answer = self.client.write(lines)
        return STORED if answer.status == 204 else _result(answer)

    def check(self) -> WriteResult:
        ping = self.client.ping()
        if not ping.ok:
            return _result(ping)
        if self.client.api_version == "2":
            return STORED
        try:
            # /ping needs no auth and knows no databases; SHOW DATABASES checks both.
            names = self.client.databases(probe=True)
        except InfluxError as exc:
            return _result(Answer(exc.status, str(exc)))
        if self.client.database not in names:
            return classify(404, f"database not found: {self.client.database!r}")
        return STORED

    def ensure_database(self, retention_s: int) -> None:
        try:
            created = self.client.ensure_database(retention_s)
        except InfluxError as exc:
            if self.client.api_version == "1" or exc.status is None:
                raise
            # Servers speaking only the write API (VictoriaMetrics, some proxies) have no
            # bucket API: not fatal, the first write tells whether the bucket exists.
            log.warning(
                "cannot check or create the bucket; writes will tell",
                extra={"bucket": self.client.database, "status": exc.status, "reason": str(exc)},
            )
            return
        if created:
            log.info(
                "created database",
                extra={"database": self.client.database, "retention_s": retention_s},
            )

    def close(self) -> None:
        self.client.close()
