"""The one InfluxDB client: line-protocol writes (precision ms, gzip), InfluxQL queries and
database/bucket set-up, for API v1 (httpx) and v2 (influxdb-client for writes).

Credentials only ever travel in headers: v1's ``user:password`` as HTTP basic auth, v2's token
as ``Authorization: Token ...``. Never as ``u=``/``p=`` query parameters, which proxies and
access logs record.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules
from influxdb_client.rest import ApiException
from influxdb_client.service.ping_service import PingService
from influxdb_client.service.write_service import WriteService

from common.redact import redact_url, redact_urls
from common.settings import CommonSettings

log = logging.getLogger(__name__)

ApiVersion = Literal["1", "2"]
# Level 1: line protocol compresses ~10x even at the fastest level; influxdb-client's own
# ``enable_gzip`` uses level 9, ~6x the CPU for a body only ~20 % smaller.
GZIP_LEVEL = 1


class InfluxError(Exception):
    """A request InfluxDB refused (``status``) or that got no answer (``status`` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(redact_urls(message))  # it is logged and shown on /healthz
        self.status = status


@dataclass(frozen=True, slots=True)
class Answer:
    """What InfluxDB said to a write or ping; ``status`` None means no answer at all."""

    status: int | None
    detail: str = ""
    retry_after: str | None = None  # the raw Retry-After header, when there was one

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Row:
    """One result row: the series' tags plus its columns (``time`` as epoch ms)."""

    measurement: str
    tags: dict[str, str]
    values: dict[str, Any]


def _no_answer(exc: BaseException) -> Answer:
    return Answer(None, redact_urls(f"{type(exc).__name__}: {exc}"))


class V2WriteApi:
    """The typed seam around influxdb-client, which ships no type hints: the four calls we
    make, each with its arguments spelled out once. ``tests/integration/test_influx_client.py``
    records what they send, so a change in the pinned client fails there.

    The batching ``WriteApi`` is deliberately not used: its ``flush()`` does nothing and it
    drops a batch silently once its retries are spent. Retries and spooling are the caller's.
    """

    def __init__(
        self, url: str, token: str, org: str, timeout: tuple[float, float], probe_timeout_s: float
    ) -> None:
        connect_s, read_s = timeout
        self._probe_timeout_ms = (int(connect_s * 1000), int(probe_timeout_s * 1000))
        self._client = InfluxDBClient(
            url=url,
            token=token,
            org=org,
            timeout=(int(connect_s * 1000), int(read_s * 1000)),  # (connect, read) in ms
            enable_gzip=False,  # we send gzip level 1 ourselves (see GZIP_LEVEL)
            retries=False,  # retries (with jitter and Retry-After) are the caller's job
        )
        self._writes = WriteService(self._client.api_client)

    def post_write(self, org: str, bucket: str, gzipped_lines: bytes) -> Answer:
        """``POST /api/v2/write?org=&bucket=&precision=ms`` of a gzipped body; never raises."""
        try:
            self._writes.post_write(
                org=org,
                bucket=bucket,
                body=gzipped_lines,
                precision="ms",
                content_encoding="gzip",
                content_type="text/plain; charset=utf-8",
            )
        except ApiException as exc:
            return _from_api_exception(exc)
        except Exception as exc:  # urllib3 connection/timeout errors, unwrapped by the client
            return _no_answer(exc)
        return Answer(204)

    def ping(self) -> bool:
        """``GET /ping`` within the probe timeout; raises on no answer or a refusal."""
        PingService(self._client.api_client).get_ping(_request_timeout=self._probe_timeout_ms)
        return True

    def bucket_exists(self, name: str) -> bool:
        """Raises InfluxError when the server has no bucket API or refuses."""
        try:
            found = self._client.buckets_api().find_bucket_by_name(name)
        except ApiException as exc:
            raise _api_error(exc) from exc
        return found is not None

    def create_bucket(self, name: str, org: str, retention_s: int) -> None:
        rules = BucketRetentionRules(type="expire", every_seconds=retention_s)
        try:
            self._client.buckets_api().create_bucket(
                bucket_name=name, org=org, retention_rules=rules
            )
        except ApiException as exc:
            raise _api_error(exc) from exc

    def close(self) -> None:
        self._client.close()


def _from_api_exception(exc: ApiException) -> Answer:
    status = int(exc.status) if exc.status else None
    if status is None:
        return _no_answer(exc)
    headers: dict[str, str] = dict(exc.headers or {})
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    return Answer(status, str(body or exc.reason or ""), headers.get("Retry-After"))


def _api_error(exc: ApiException) -> InfluxError:
    return InfluxError(f"InfluxDB answered {exc.status}: {exc.reason}", exc.status or None)


class InfluxClient:
    """Writes, queries and set-up against one database (v1) or bucket (v2)."""

    def __init__(
        self,
        url: str,
        *,
        api_version: ApiVersion,
        database: str,
        token: str | None = None,
        org: str = "",
        timeout_s: float = 10.0,
        connect_timeout_s: float | None = None,
        probe_timeout_s: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``timeout_s`` bounds reading an answer; ``connect_timeout_s`` (default the same)
        bounds connecting; ``probe_timeout_s`` (default the same) bounds a ping, kept short so
        a database that accepts connections and never answers is found out quickly."""
        connect_s = timeout_s if connect_timeout_s is None else connect_timeout_s
        self._probe_timeout = httpx.Timeout(
            timeout_s if probe_timeout_s is None else probe_timeout_s, connect=connect_s
        )
        self.url = url.rstrip("/")
        self.where = redact_url(self.url)
        """The database's URL as messages show it (no password)."""
        self.api_version = api_version
        self.database = database  # the v1 database, or the v2 bucket
        self.org = org
        auth: httpx.Auth | None = None
        headers: dict[str, str] = {}
        if token and api_version == "2":
            headers["Authorization"] = f"Token {token}"
        elif token:
            # v1: the contract's INFLUX_TOKEN is ``user:password``.
            user, _, password = token.partition(":")
            auth = httpx.BasicAuth(user, password)
        self._http = httpx.Client(
            base_url=self.url,
            auth=auth,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_s),
            transport=transport,
        )
        self._v2 = (
            V2WriteApi(
                self.url, token or "", org, (connect_s, timeout_s), self._probe_timeout.read or 0
            )
            if api_version == "2"
            else None
        )

    @classmethod
    def from_settings(
        cls,
        settings: CommonSettings,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        *,
        connect_timeout_s: float | None = None,
        probe_timeout_s: float | None = None,
    ) -> InfluxClient:
        """The database of the contract's ``INFLUX_*`` variables."""
        token = settings.influx_token.get_secret_value() if settings.influx_token else None
        return cls(
            settings.influx_url,
            api_version=settings.influx_api_version,
            database=settings.influx_bucket,
            token=token,
            org=settings.influx_org,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            probe_timeout_s=probe_timeout_s,
            transport=transport,
        )

    # -- writes ----------------------------------------------------------------------------

    def write(self, lines: bytes) -> Answer:
        """Write newline-terminated line protocol (precision ms); never raises."""
        body = gzip.compress(lines, compresslevel=GZIP_LEVEL)
        if self._v2 is not None:
            return self._v2.post_write(self.org, self.database, body)
        try:
            response = self._http.post(
                "/write",
                params={"db": self.database, "precision": "ms"},
                content=body,
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
            )
        except httpx.HTTPError as exc:
            return _no_answer(exc)
        return Answer(response.status_code, response.text, response.headers.get("Retry-After"))

    def ping(self) -> Answer:
        """Is the server there? (Says nothing about credentials or the database.)"""
        if self._v2 is not None:
            try:
                return (
                    Answer(204) if self._v2.ping() else Answer(None, "ConnectionError: ping failed")
                )
            except Exception as exc:
                return _no_answer(exc)
        try:
            response = self._http.get("/ping", timeout=self._probe_timeout)
        except httpx.HTTPError as exc:
            return _no_answer(exc)
        return Answer(response.status_code, response.text)

    # -- InfluxQL (1.x natively, 2.x through its v1 compatibility endpoint) ----------------

    def query(self, text: str) -> list[Row]:
        """Run a read-only InfluxQL query in the database; raises InfluxError."""
        # No ``rp``: 1.x uses the database's default policy, 2.x its default DBRP mapping.
        params = {"db": self.database, "q": text, "epoch": "ms"}
        return list(_rows(self._request("GET", params)))

    def _statement(self, text: str, probe: bool = False) -> dict[str, Any]:
        """POST an InfluxQL statement that may change things (CREATE ...); raises InfluxError."""
        return self._request("POST", {"q": text}, probe)

    def _request(self, method: str, params: dict[str, str], probe: bool = False) -> dict[str, Any]:
        timeout = self._probe_timeout if probe else httpx.USE_CLIENT_DEFAULT
        try:
            if method == "GET":
                response = self._http.get("/query", params=params, timeout=timeout)
            else:
                response = self._http.post("/query", data=params, timeout=timeout)
        except httpx.HTTPError as exc:
            raise InfluxError(f"InfluxDB at {self.where} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise InfluxError(
                f"InfluxDB answered {response.status_code}: {response.text.strip()[:300]}",
                response.status_code,
            )
        body: dict[str, Any] = response.json()
        return body

    def databases(self, probe: bool = False) -> set[str]:
        """Names of the 1.x databases (``SHOW DATABASES``, within the probe timeout when
        ``probe``); raises InfluxError."""
        rows = _rows(self._statement("SHOW DATABASES", probe))
        return {str(row.values["name"]) for row in rows}

    # -- set-up ----------------------------------------------------------------------------

    def ensure_database(self, retention_s: int) -> bool:
        """Create the database (v1) or bucket (v2) when missing; True if it was created.

        ``retention_s`` 0 keeps data forever. Raises InfluxError when the server cannot tell
        or refuses (a v2 server with only the write API, e.g. VictoriaMetrics, cannot tell).
        """
        if self._v2 is not None:
            if self._v2.bucket_exists(self.database):
                return False
            self._v2.create_bucket(self.database, self.org, retention_s)
            return True
        if self.database in self.databases():
            return False
        duration = f"{retention_s}s" if retention_s else "INF"
        name = self.database.replace("\\", "\\\\").replace('"', '\\"')
        list(_rows(self._statement(f'CREATE DATABASE "{name}" WITH DURATION {duration}')))
        return True

    def close(self) -> None:
        self._http.close()
        if self._v2 is not None:
            self._v2.close()


def _rows(body: dict[str, Any]) -> Iterator[Row]:
    for result in body.get("results", ()):
        if "error" in result:
            raise InfluxError(f"InfluxQL error: {result['error']}")
        for series in result.get("series", ()):
            columns = series["columns"]
            tags = dict(series.get("tags") or {})
            for values in series.get("values", ()):
                yield Row(series["name"], tags, dict(zip(columns, values, strict=True)))
