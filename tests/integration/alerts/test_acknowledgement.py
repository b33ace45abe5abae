"""facility-alerts acknowledges a reading only once it has judged it (and what that caused is
with the broker): killed right after reconnecting to a backlog, it loses none of it; and a
Receive Maximum full of held telemetry does not keep the retained state from being restored.
Real facility-alerts processes, a real Mosquitto."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from common.messages import AlertEvent
from tests.helpers import MessageCollector, bound_port, wait_until
from tests.integration.alerts.support import (
    AlertsRun,
    alerts_run,
    health,
    metric,
    publish_full_bin,
)
from tests.integration.ingest_support import BASE_TS_MS, publish_acknowledged
from tests.servers import MosquittoServer, wait_alerts_ready

ACCEPTED = 'alerts_messages_total{outcome="accepted"}'
BACKGROUND = [f"bin-{n:03d}" for n in range(1, 41)]


def _backlog(count: int, probes: dict[int, str]) -> list[tuple[str, bytes, int]]:
    """``count`` readings of 40 bins, none full, one ms apart; the reading at each index of
    ``probes`` is instead that bin full (95 %), the only thing that makes ``bin_full`` fire."""
    out = []
    for i in range(count):
        device = probes.get(i, BACKGROUND[i % len(BACKGROUND)])
        fill = 95.0 if i in probes else float(10 + i % 40)
        body = {"ts": BASE_TS_MS + i, "fill_pct": fill, "weight_kg": fill * 3}
        out.append((f"facility/ewaste/ewaste_bin/{device}/telemetry", json.dumps(body).encode(), i))
    return out


def _start(run: AlertsRun) -> int:
    """A new process of ``run``; its /healthz port."""
    run.port_file.unlink(missing_ok=True)
    return bound_port(run.port_file, run.start())


def _firing(collector: MessageCollector) -> set[str]:
    events = [AlertEvent.model_validate_json(m.payload) for m in collector.received]
    return {e.device_id for e in events if e.state == "firing"}


def test_readings_acknowledged_only_once_judged_survive_a_kill_right_after_reconnecting(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    run = alerts_run(
        tmp_path,
        mosquitto.url,
        "facility-alerts-ack-test",
        ALERTS_INFLUX_ENABLED="false",
        ALERTS_SYNC_TIMEOUT_S="60",
    )
    probes = {10_000: "bin-041", 15_000: "bin-042", 19_999: "bin-043"}
    try:
        first = run.start()
        wait_alerts_ready(bound_port(run.port_file, first))  # its persistent session exists
        run.stop(first, signal.SIGTERM)
        with MessageCollector(mosquitto.url, "facility/alerts/bin_full/#") as alerts:
            # 20,000 readings queued in alerts' session while it is down.
            publish_acknowledged(mosquitto, _backlog(20_000, probes), client_id="ack-test-pub")

            # Killed as soon as it has judged anything: with acknowledgements on receipt it
            # would have acknowledged (and the broker forgotten) thousands it never judged.
            port = _start(run)
            wait_until(lambda: (metric(port, ACCEPTED) or 0) >= 1, timeout=60, interval=0.01)
            run.stop(run.procs[-1], signal.SIGKILL)

            # The next start is handed every reading not judged before the kill: each full bin
            # fires, also those whose reading came long after the kill point.
            _start(run)
            wait_until(lambda: _firing(alerts) >= set(probes.values()), timeout=90)
    finally:
        run.kill_all()


def test_a_receive_maximum_full_of_held_telemetry_does_not_stop_the_restore(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    # Held telemetry is not acknowledged until the retained state is in, and the broker sends
    # no more than Receive Maximum unacknowledged: the state and the sync marker must still
    # come through, well before the sync timeout would give up on them.
    run = alerts_run(
        tmp_path,
        mosquitto.url,
        "facility-alerts-hold-test",
        ALERTS_INFLUX_ENABLED="false",
        ALERTS_RECEIVE_MAXIMUM="20",
        ALERTS_SYNC_TIMEOUT_S="120",
    )
    try:
        port = _start(run)
        wait_alerts_ready(port)
        with MessageCollector(mosquitto.url, "facility/alerts/bin_full/#") as alerts:
            publish_full_bin(mosquitto.url, "bin-044")
            wait_until(lambda: _firing(alerts) == {"bin-044"}, timeout=30)
            run.stop(run.procs[-1], signal.SIGTERM)
            # 2,000 readings wait in the session, the last one the firing bin, still full.
            backlog = _backlog(2_000, {1_999: "bin-044"})
            publish_acknowledged(mosquitto, backlog, client_id="hold-test-pub")

            port = _start(run)
            wait_alerts_ready(port, timeout=60)  # half the sync timeout: the marker came back
            wait_until(lambda: (metric(port, ACCEPTED) or 0) >= len(backlog), timeout=60)
            assert health(port)["firing"] == 1  # restored, not fired a second time
            firings = [
                m
                for m in alerts.received
                if AlertEvent.model_validate_json(m.payload).state == "firing"
            ]
            assert len(firings) == 1
    finally:
        run.kill_all()
