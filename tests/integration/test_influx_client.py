"""The shared InfluxDB client against real servers, seen through a loopback recording proxy:
credentials travel only in headers (v1 basic auth, v2 token) and never in a URL, v1 auth is
still enforced, and the v2 write goes through influxdb-client as gzip with precision ms."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator

import httpx
import pytest

from common.influx import InfluxClient
from common.settings import CommonSettings, load_settings
from services.alerts.notifiers.influx import InfluxWriter
from tests.integration.fault_proxy import Answer, LoopbackProxy, Request, proxies
from tests.servers import InfluxDB1Server, VictoriaMetricsServer

LINES = b"probe,device_id=a v=1 1700000000123\nprobe,device_id=b v=2 1700000000456\n"


class RecordingProxy(LoopbackProxy):
    """Forwards every request to ``upstream`` and records it; ``fail_next`` answers the next
    request itself (status, headers) instead, to see how the client reads a refusal."""

    def __init__(self, upstream: str) -> None:
        self.seen: list[Request] = []
        self.fail_next: tuple[int, dict[str, str]] | None = None
        super().__init__(upstream, timeout=10.0)

    def intercept(self, request: Request) -> Answer | None:
        self.seen.append(request)
        if self.fail_next is None:
            return None
        status, headers = self.fail_next
        self.fail_next = None
        return Answer(status, headers, b"too hot")


@pytest.fixture
def proxy_to() -> Iterator[Callable[[str], RecordingProxy]]:
    yield from proxies(RecordingProxy)


def _settings(url: str, version: str, token: str) -> CommonSettings:
    return load_settings(
        CommonSettings, influx_url=url, influx_api_version=version, influx_token=token
    )


def test_v1_credentials_travel_as_basic_auth_never_in_the_url(
    server_factory: Callable[..., InfluxDB1Server],
    proxy_to: Callable[[str], RecordingProxy],
) -> None:
    influx = server_factory(InfluxDB1Server, settings={"http": {"auth-enabled": True}})
    influx.query_raw("CREATE USER admin WITH PASSWORD 's3cret-pw' WITH ALL PRIVILEGES")
    influx.http.auth = ("admin", "s3cret-pw")
    proxy = proxy_to(influx.url)
    settings = _settings(proxy.url, "1", "admin:s3cret-pw")

    client = InfluxClient.from_settings(settings)
    assert client.ping().ok
    assert client.ensure_database(0) is True  # SHOW DATABASES + CREATE DATABASE, authorised
    assert client.write(LINES).status == 204
    rows = client.query("SELECT v FROM probe")
    assert sorted(r.values["v"] for r in rows) == [1.0, 2.0]
    client.close()
    # The alerts notifier's writer (it once put u=/p= in the query string) shares the client.
    writer = InfluxWriter(settings)
    writer.write([("alert", {"rule": "r"}, {"state": "firing"}, 1_700_000_000_789)])
    writer.close()
    assert influx.query("SELECT count(state) FROM alert", "facility")[0]["count"] == 1

    assert [(r.method, r.url.partition("?")[0]) for r in proxy.seen] == [
        ("GET", "/ping"),
        ("POST", "/query"),  # SHOW DATABASES
        ("POST", "/query"),  # CREATE DATABASE
        ("POST", "/write"),
        ("GET", "/query"),  # SELECT
        ("POST", "/write"),  # the alerts writer
    ]
    for request in proxy.seen:
        assert "s3cret-pw" not in request.url and "admin" not in request.url
        assert "u=" not in request.url and "p=" not in request.url
        if not request.url.startswith("/ping"):
            assert request.headers["authorization"].startswith("Basic ")
        assert b"s3cret-pw" not in request.body

    wrong = InfluxClient.from_settings(_settings(proxy.url, "1", "admin:wrong"))
    assert wrong.write(LINES).status == 401  # v1 auth is still enforced
    wrong.close()


def test_v2_write_is_gzip_ms_through_influxdb_client_with_a_token_header(
    victoria_metrics: VictoriaMetricsServer,
    proxy_to: Callable[[str], RecordingProxy],
) -> None:
    proxy = proxy_to(victoria_metrics.url)
    client = InfluxClient.from_settings(_settings(proxy.url, "2", "tok-123"))

    answer = client.write(LINES)
    assert answer.ok, answer
    write = proxy.seen[-1]
    assert write.method == "POST" and write.url.startswith("/api/v2/write?")
    params = httpx.URL(write.url).params
    assert (params["org"], params["bucket"], params["precision"]) == ("facility", "facility", "ms")
    assert write.headers["authorization"] == "Token tok-123"
    assert write.headers["content-encoding"] == "gzip"
    assert gzip.decompress(write.body) == LINES
    assert "tok-123" not in write.url
    stored = victoria_metrics.samples('probe_v{device_id=~"a|b"}')  # the write was acked
    assert sorted(s.timestamp for s in stored) == [1700000000123, 1700000000456]

    # A refusal comes back as an answer with its status, body and Retry-After, never raised.
    proxy.fail_next = (503, {"Retry-After": "7"})
    refused = client.write(LINES)
    assert (refused.status, refused.detail, refused.retry_after) == (503, "too hot", "7")
    client.close()
