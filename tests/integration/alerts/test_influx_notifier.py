"""The alerts' InfluxDB notifier against a real InfluxDB 1.x behind a loopback proxy that
refuses one alert's point for good: that point is dead-lettered and counted, and the alert and
dispatch points after it are still stored; a 503 is retried, not dead-lettered. The real
facility-alerts publishes that dead letter on ``P/deadletter/alerts``."""

from __future__ import annotations

import gzip
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.messages import DeadLetter
from common.schema import DISPATCH_MEASUREMENT
from common.settings import CommonSettings, load_settings
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.influx import INFLUX_REFUSED, InfluxNotifier, InfluxWriter
from tests.helpers import MessageCollector, bound_port, wait_until
from tests.integration.alerts.support import BIN_FULL_RULES, alerts_run, publish_full_bin
from tests.integration.fault_proxy import Answer, LoopbackProxy, Request
from tests.servers import InfluxDB1Server, MosquittoServer, wait_alerts_ready
from tests.unit.alerts.helpers import T0, bin_reading, engine

# What InfluxDB 1.x answers to a float written into a field that holds strings.
CONFLICT = (
    b'{"error":"partial write: field type conflict: input field \\"value\\" on measurement '
    b'\\"alert\\" is type float, already exists as type string dropped=1"}'
)


class RefusingProxy(LoopbackProxy):
    """Forwards to ``upstream``, but answers 400 (InfluxDB's field type conflict) to every
    write carrying ``refuse``, and 503 to the first write carrying ``stall``."""

    def __init__(self, upstream: str, refuse: bytes, stall: bytes) -> None:
        self.writes: list[bytes] = []
        self._refuse, self._stall = refuse, stall
        self._stalled = False
        super().__init__(upstream, timeout=10.0)

    def intercept(self, request: Request) -> Answer | None:
        if not request.url.startswith("/write"):
            return None
        lines = gzip.decompress(request.body)
        self.writes.append(lines)
        json_type = {"Content-Type": "application/json"}
        if self._refuse in lines:
            return Answer(400, json_type, CONFLICT)
        if self._stall in lines and not self._stalled:
            self._stalled = True
            return Answer(503, json_type, b'{"error":"busy"}')
        return None


@pytest.fixture
def proxy(influxdb1: InfluxDB1Server) -> Iterator[RefusingProxy]:
    influxdb1.create_database("facility")
    refusing = RefusingProxy(influxdb1.url, b"device_id=bin-bad", b"device_id=bin-slow")
    yield refusing
    refusing.close()


def test_a_point_influxdb_refuses_for_good_is_dead_lettered_and_later_points_are_stored(
    influxdb1: InfluxDB1Server, proxy: RefusingProxy
) -> None:
    settings = load_settings(CommonSettings, influx_url=proxy.url, influx_api_version="1")
    metrics = AlertsMetrics()
    letters: list[DeadLetter] = []
    notifier = InfluxNotifier(
        InfluxWriter(settings), metrics, letters.append, base_s=0.02, max_s=0.05
    )
    eng = engine(BIN_FULL_RULES)
    for device in ("bin-bad", "bin-slow", "bin-003"):
        for transition in eng.handle(bin_reading(device, T0, 95)):
            notifier.notify(transition)
    notifier.write_points([(DISPATCH_MEASUREMENT, {"zone": "z1"}, {"bins": 3}, T0 + 1)])

    def stored() -> list[str]:
        rows = influxdb1.query("SELECT * FROM alert", "facility")
        return sorted(row["device_id"] for row in rows)

    wait_until(lambda: stored() == ["bin-003", "bin-slow"])
    wait_until(lambda: influxdb1.query(f"SELECT * FROM {DISPATCH_MEASUREMENT}", "facility"))
    notifier.close(timeout=5)

    (letter,) = letters
    assert (letter.program, letter.code) == ("alerts", INFLUX_REFUSED)
    assert "400" in letter.reason and "field type conflict" in letter.reason
    assert letter.raw_payload().startswith(b"alert,") and "device_id=bin-bad" in letter.payload
    assert sum(b"device_id=bin-bad" in body for body in proxy.writes) == 1  # never retried
    assert sum(b"device_id=bin-slow" in body for body in proxy.writes) == 2  # 503, then stored

    def count(outcome: str) -> float | None:
        labels = {"notifier": "influx", "outcome": outcome}
        return metrics.registry.get_sample_value("alerts_deliveries_total", labels)

    assert (count("refused"), count("failed"), count("delivered")) == (1.0, 1.0, 3.0)


def test_real_alerts_publishes_a_refused_point_as_a_dead_letter_and_stores_the_next_alert(
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    proxy: RefusingProxy,
    mqtt_subscriber: Callable[..., MessageCollector],
    tmp_path: Path,
) -> None:
    letters = mqtt_subscriber(mosquitto.url, "facility/deadletter/alerts")
    run = alerts_run(
        tmp_path,
        mosquitto.url,
        "facility-alerts-refused-point-test",
        ALERTS_RETRY_BASE_S="0.1",
        ALERTS_RETRY_MAX_S="0.2",
        INFLUX_URL=proxy.url,
        INFLUX_API_VERSION="1",
    )
    proc = run.start()
    try:
        wait_alerts_ready(bound_port(run.port_file, proc))
        for device in ("bin-bad", "bin-002"):
            publish_full_bin(mosquitto.url, device)
        ((_, raw),) = letters.wait_for(1, 30)

        def stored() -> list[str]:
            return [row["device_id"] for row in influxdb1.query("SELECT * FROM alert", "facility")]

        wait_until(lambda: stored() == ["bin-002"], timeout=30)
    finally:
        run.stop(proc, signal.SIGTERM)
    assert proc.returncode == 0
    letter = DeadLetter.model_validate_json(raw)
    assert (letter.program, letter.code) == ("alerts", INFLUX_REFUSED)
    assert "device_id=bin-bad" in letter.payload and "field type conflict" in letter.reason
