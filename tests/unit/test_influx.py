"""The shared InfluxDB client's auth and InfluxQL decoding, with httpx's mock transport (the
real-server behaviour is in tests/integration/test_influx_client.py)."""

from __future__ import annotations

import httpx
import pytest

from common.influx import InfluxClient, InfluxError
from common.settings import CommonSettings, load_settings


def test_influx_auth_is_a_token_header_on_v2_and_basic_auth_on_v1() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"results": [{"statement_id": 0}]})

    for version, token in (("2", "tok"), ("1", "reader:secret")):
        settings = load_settings(CommonSettings, influx_api_version=version, influx_token=token)
        reader = InfluxClient.from_settings(settings, transport=httpx.MockTransport(answer))
        assert reader.query("SHOW MEASUREMENTS") == []
        reader.close()
    assert seen[0].headers["Authorization"] == "Token tok"
    assert seen[1].headers["Authorization"].startswith("Basic ")
    assert seen[1].url.params["db"] == "facility"
    assert all("secret" not in str(r.url) and "tok" not in str(r.url) for r in seen)


def test_query_rows_carry_tags_and_columns_and_errors_raise() -> None:
    body = {
        "results": [
            {
                "series": [
                    {
                        "name": "alert",
                        "tags": {"rule": "bin_full"},
                        "columns": ["time", "state"],
                        "values": [[1, "firing"], [2, "resolved"]],
                    }
                ]
            }
        ]
    }
    answers = iter(
        [
            httpx.Response(200, json=body),
            httpx.Response(200, json={"results": [{"error": "database not found: x"}]}),
            httpx.Response(401, text="authorization failed"),
        ]
    )
    client = InfluxClient(
        "http://influx.invalid",
        api_version="1",
        database="facility",
        transport=httpx.MockTransport(lambda _request: next(answers)),
    )
    rows = client.query("SELECT state FROM alert GROUP BY rule")
    assert [(r.measurement, r.tags["rule"], r.values["state"]) for r in rows] == [
        ("alert", "bin_full", "firing"),
        ("alert", "bin_full", "resolved"),
    ]
    with pytest.raises(InfluxError, match="database not found"):
        client.query("SELECT 1")
    with pytest.raises(InfluxError, match="401") as info:
        client.query("SELECT 1")
    assert info.value.status == 401
    client.close()
