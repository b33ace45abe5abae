"""InfluxDB 1.x HTTP API sink: ``POST /write?db=&precision=ms`` with gzip, via httpx."""

from __future__ import annotations

import gzip
import logging

import httpx

from services.ingest.retry import parse_retry_after
from services.ingest.sinks.base import STORED, WriteResult, classify, unreachable

log = logging.getLogger(__name__)


class InfluxV1Sink:
    """Writes to a 1.x database; ``token`` is ``user:password`` (sent as basic auth) or None."""

    name = "influx1"

    def __init__(self, url: str, database: str, token: str | None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        auth = None
        if token:
            user, _, password = token.partition(":")
            auth = httpx.BasicAuth(user, password)
        self._http = httpx.Client(base_url=self.url, auth=auth, timeout=timeout_s)

    def write(self, lines: bytes) -> WriteResult:
        # Level 1: line protocol compresses ~10x even at the fastest level.
        body = gzip.compress(lines, compresslevel=1)
        try:
            response = self._http.post(
                "/write",
                params={"db": self.database, "precision": "ms"},
                content=body,
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
            )
        except httpx.HTTPError as exc:
            return unreachable(exc)
        if response.status_code == 204:
            return STORED
        return classify(
            response.status_code,
            response.text,
            parse_retry_after(response.headers.get("Retry-After")),
        )

    def _query(self, q: str) -> httpx.Response:
        return self._http.post("/query", data={"q": q})

    def check(self) -> WriteResult:
        try:
            ping = self._http.get("/ping")
            if ping.status_code >= 300:
                return classify(ping.status_code, ping.text)
            # /ping needs no auth and knows no databases; SHOW DATABASES checks both.
            answer = self._query("SHOW DATABASES")
        except httpx.HTTPError as exc:
            return unreachable(exc)
        if answer.status_code >= 300:
            return classify(answer.status_code, answer.text)
        if self.database not in answer.text:
            return classify(404, f"database not found: {self.database!r}")
        return STORED

    def ensure_database(self, retention_s: int) -> None:
        answer = self._query("SHOW DATABASES")
        answer.raise_for_status()
        names = {
            row[0]
            for result in answer.json().get("results", [])
            for series in result.get("series", [])
            for row in series.get("values", [])
        }
        if self.database in names:
            return
        duration = f"{retention_s}s" if retention_s else "INF"
        name = self.database.replace("\\", "\\\\").replace('"', '\\"')
        created = self._query(f'CREATE DATABASE "{name}" WITH DURATION {duration}')
        created.raise_for_status()
        error = next((r.get("error") for r in created.json().get("results", [])), None)
        if error:
            raise RuntimeError(f"CREATE DATABASE {self.database!r} failed: {error}")
        log.info("created database", extra={"database": self.database, "retention": duration})

    def close(self) -> None:
        self._http.close()
