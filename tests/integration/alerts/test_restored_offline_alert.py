"""A ``device_offline`` alert restored at start resolves when the device came back while
facility-alerts was down (retained ``online``, fresh readings). Real facility-alerts
processes, a real Mosquitto."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from common.messages import AlertEvent
from tests.helpers import MessageCollector, bound_port, publish, wait_until
from tests.integration.alerts.support import alerts_run, health
from tests.servers import MosquittoServer, wait_alerts_ready

OFFLINE_RULES = """
rules:
  - name: device_offline
    type: absence
    select: {device: nzc-meter-1}
    after: 15m
    offline_status: true
"""
METER = "facility/nzc/energy_meter/nzc-meter-1"


def _states(collector: MessageCollector) -> list[str]:
    return [AlertEvent.model_validate_json(m.payload).state for m in collector.received]


def test_a_restored_device_offline_alert_resolves_when_the_device_came_back_meanwhile(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    rules = tmp_path / "offline.yaml"
    rules.write_text(OFFLINE_RULES)
    run = alerts_run(
        tmp_path,
        mosquitto.url,
        "facility-alerts-offline-test",
        ALERTS_INFLUX_ENABLED="false",
        ALERTS_RULES_FILE=str(rules),
    )
    topic = "facility/alerts/device_offline/nzc/nzc-meter-1"
    try:
        with MessageCollector(mosquitto.url, topic) as alerts:
            first = run.start()
            wait_alerts_ready(bound_port(run.port_file, first))
            publish(mosquitto.url, f"{METER}/status", "offline", retain=True)
            wait_until(lambda: _states(alerts) == ["firing"], timeout=30)
            run.stop(first, signal.SIGTERM)  # the firing alert stays retained

            # While alerts is down the meter comes back: online (retained) and reporting.
            publish(mosquitto.url, f"{METER}/status", "online", retain=True)
            reading = {"ts": int(time.time() * 1000), "pv_power_w": 1200.0}
            publish(mosquitto.url, f"{METER}/telemetry", json.dumps(reading))

            run.port_file.unlink()
            second = run.start()
            port = bound_port(run.port_file, second)
            wait_alerts_ready(port)
            wait_until(lambda: _states(alerts) == ["firing", "resolved"], timeout=30)
            wait_until(lambda: health(port)["firing"] == 0, timeout=10)
    finally:
        run.kill_all()
