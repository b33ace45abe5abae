"""facility-alerts keeps bounded memory: open alerts beyond ``ALERTS_MAX_OPEN_ALERTS`` are
refused (logged, counted) while it goes on judging, and a chatty device's history stays
within ``ALERTS_HISTORY_MAX_POINTS``. Real facility-alerts processes, a real Mosquitto."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx

from tests.helpers import bound_port, publish, wait_until
from tests.integration.alerts.support import alerts_run, health, metric, publish_full_bin
from tests.integration.ingest_support import publish_acknowledged
from tests.servers import MosquittoServer, wait_alerts_ready

REFUSED = 'alerts_refused_alerts_total{rule="bin_full"}'
FORECAST_RULES = """
rules:
  - name: bin_predicted_full
    type: forecast
    select: {device: bin-001}
    within: 12h
    window: 48h
"""


def test_alerts_beyond_the_open_bound_are_refused_counted_and_judging_goes_on(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    run = alerts_run(
        tmp_path,
        mosquitto.url,
        "facility-alerts-open-bound-test",
        ALERTS_INFLUX_ENABLED="false",
        ALERTS_MAX_OPEN_ALERTS="3",
        LOG_FORMAT="json",
    )
    try:
        proc = run.start(capture_stderr=True)
        port = bound_port(run.port_file, proc)
        wait_alerts_ready(port)
        for n in range(1, 6):
            publish_full_bin(mosquitto.url, f"bin-00{n}")
        wait_until(lambda: metric(port, REFUSED) == 2, timeout=30)
        assert health(port)["firing"] == 3
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        # One resolves: the next full bin has room again.
        low = {"ts": int(time.time() * 1000), "fill_pct": 5.0, "weight_kg": 2.0}
        publish(mosquitto.url, "facility/ewaste/ewaste_bin/bin-001/telemetry", json.dumps(low))
        wait_until(lambda: health(port)["firing"] == 2, timeout=30)
        publish_full_bin(mosquitto.url, "bin-005")
        wait_until(lambda: health(port)["firing"] == 3, timeout=30)
        log = run.stop(proc, signal.SIGTERM)
        assert b"alerts refused: ALERTS_MAX_OPEN_ALERTS are open" in log
    finally:
        run.kill_all()


def test_a_device_reporting_every_second_keeps_history_within_its_bound(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    rules = tmp_path / "forecast.yaml"
    rules.write_text(FORECAST_RULES)
    run = alerts_run(
        tmp_path,
        mosquitto.url,
        "facility-alerts-history-test",
        ALERTS_INFLUX_ENABLED="false",
        ALERTS_RULES_FILE=str(rules),
        ALERTS_HISTORY_MAX_POINTS="20",
        ALERTS_TICK_S="0.2",
    )
    now = int(time.time() * 1000)
    readings = []
    for second in range(500):  # the last 500 s, one a second, slowly filling
        body = {"ts": now - (500 - second) * 1000, "fill_pct": 40 + second / 100, "weight_kg": 9}
        readings.append(
            ("facility/ewaste/ewaste_bin/bin-001/telemetry", json.dumps(body).encode(), second)
        )
    try:
        proc = run.start()
        port = bound_port(run.port_file, proc)
        wait_alerts_ready(port)
        publish_acknowledged(mosquitto, readings, client_id="history-test-pub")
        accepted = 'alerts_messages_total{outcome="accepted"}'
        wait_until(lambda: metric(port, accepted) == len(readings), timeout=30)
        # Counted at the next tick: thinned to the bound, not emptied.
        wait_until(lambda: 10 <= health(port)["history_points"] <= 20, timeout=10)
        assert metric(port, "alerts_history_points") == health(port)["history_points"]
    finally:
        run.kill_all()
