"""The /healthz + /metrics endpoint and the log formatters."""

from __future__ import annotations

import json
import logging

import httpx
from prometheus_client import CollectorRegistry, Counter

from common.observability import ConsoleFormatter, JsonFormatter, ServiceHttpServer


def test_healthz_and_metrics_over_http() -> None:
    registry = CollectorRegistry()
    received = Counter("facility_test_received", "messages", registry=registry)
    received.inc(3)
    state = {"healthy": True, "spool_bytes": 0}
    server = ServiceHttpServer("127.0.0.1", 0, registry, lambda: state).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        ok = httpx.get(f"{base}/healthz")
        assert ok.status_code == 200 and ok.json() == state
        state["healthy"] = False
        assert httpx.get(f"{base}/healthz").status_code == 503
        metrics = httpx.get(f"{base}/metrics").text
        assert "facility_test_received_total 3.0" in metrics
        assert httpx.get(f"{base}/nope").status_code == 404
    finally:
        server.stop()


def test_a_failing_health_check_reports_unhealthy() -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("sink exploded")

    server = ServiceHttpServer("127.0.0.1", 0, CollectorRegistry(), broken).start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.port}/healthz")
        assert response.status_code == 503 and "sink exploded" in response.json()["error"]
    finally:
        server.stop()


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("ingest", logging.WARNING, __file__, 1, "spooled %d", (5,), None)
    record.__dict__.update(extra)
    return record


def test_json_log_lines_carry_extra_fields() -> None:
    line = JsonFormatter("facility-ingest").format(_record(topic="facility/x", code="too_large"))
    entry = json.loads(line)
    assert entry["msg"] == "spooled 5" and entry["level"] == "warning"
    assert entry["program"] == "facility-ingest"
    assert (entry["topic"], entry["code"]) == ("facility/x", "too_large")


def test_console_log_lines_are_readable() -> None:
    line = ConsoleFormatter().format(_record(code="too_large"))
    assert "WARNING" in line and "spooled 5" in line and "code=too_large" in line
