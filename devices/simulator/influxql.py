"""A small InfluxQL reader over HTTP ``/query``: InfluxDB 1.x natively, 2.x through its v1
compatibility endpoint (token header, DBRP mapping ``{bucket}/autogen``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from common.settings import CommonSettings


class InfluxQueryError(Exception):
    """The query could not be run or InfluxDB answered with an error."""


@dataclass(frozen=True, slots=True)
class Row:
    """One result row: the series' tags plus its columns (``time`` as epoch ms)."""

    measurement: str
    tags: dict[str, str]
    values: dict[str, Any]


class InfluxReader:
    def __init__(self, settings: CommonSettings, timeout_s: float = 30.0) -> None:
        self.database = settings.influx_bucket
        headers: dict[str, str] = {}
        auth: tuple[str, str] | None = None
        token = settings.influx_token.get_secret_value() if settings.influx_token else None
        if token and settings.influx_api_version == "2":
            headers["Authorization"] = f"Token {token}"
        elif token:
            # v1: the contract's INFLUX_TOKEN is ``user:password``.
            user, _, password = token.partition(":")
            auth = (user, password)
        self._http = httpx.Client(
            base_url=settings.influx_url, headers=headers, auth=auth, timeout=timeout_s
        )

    def close(self) -> None:
        self._http.close()

    def query(self, text: str) -> list[Row]:
        # No ``rp``: 1.x uses the database's default policy, 2.x its default DBRP mapping.
        params = {"db": self.database, "q": text, "epoch": "ms"}
        try:
            response = self._http.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise InfluxQueryError(f"InfluxDB at {self._http.base_url} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise InfluxQueryError(
                f"InfluxDB answered {response.status_code}: {response.text.strip()[:300]}"
            )
        return list(_rows(response.json()))


def _rows(body: dict[str, Any]) -> Iterator[Row]:
    for result in body.get("results", ()):
        if "error" in result:
            raise InfluxQueryError(f"InfluxQL error: {result['error']}")
        for series in result.get("series", ()):
            columns = series["columns"]
            tags = dict(series.get("tags") or {})
            for values in series.get("values", ()):
                yield Row(series["name"], tags, dict(zip(columns, values, strict=True)))
