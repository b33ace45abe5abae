"""facility-bridge end to end, all real: a "network server" Mosquitto carrying The Things
Stack uplinks, our Mosquitto, InfluxDB 1.x, facility-ingest, facility-alerts and the bridge.

A LoRaWAN fill-level bin crossing 90 % fires bin_full and is dispatched; a Shelly meter's
readings land in ``energy``; a bridge killed mid-stream, a source broker restart and our
broker's restart lose nothing (exact counts); bad input becomes dead letters and the bridge
goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.messages import AlertEvent, DeadLetter, DispatchRequest
from tests.helpers import MessageCollector, bound_port, publish, wait_until
from tests.integration.alerts.support import alerts_run
from tests.integration.bridge_support import (
    CHIRPSTACK_GATES_SOURCE,
    LORA_BIN,
    SHELLY_SOURCE,
    BridgeProcess,
    bridge_env,
    chirpstack_people_count,
    shelly_status,
    ttn_join,
    ttn_source,
    ttn_uplink,
    write_registry,
    write_sources,
)
from tests.integration.ingest_support import (
    ROOT,
    IngestFactory,
    IngestProcess,
    ingest_processes,
    labelled,
    publish_acknowledged,
    v1_env,
)
from tests.servers import InfluxDB1Server, InfluxQueryError, MosquittoServer, wait_alerts_ready
from tests.unit.alerts.helpers import bin_full_rules

P = "facility"


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[IngestFactory]:
    yield from ingest_processes(tmp_path)


@pytest.fixture
def bridges(tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    made: list[BridgeProcess] = []

    def make(env: dict[str, str], name: str = "bridge") -> BridgeProcess:
        process = BridgeProcess(tmp_path, env, name)
        made.append(process)
        return process

    yield make
    for process in made:
        process.stop()


@pytest.fixture
def network_server(server_factory: Callable[..., MosquittoServer]) -> MosquittoServer:
    """The LoRaWAN network server's MQTT broker (a second, separate Mosquitto)."""
    return server_factory(MosquittoServer)


def stored_rows(influx: InfluxDB1Server, query: str) -> list[dict[str, Any]]:
    """The rows of an InfluxQL query on the test database, none while it is not there yet."""
    try:
        return influx.query(query, db="facility")
    except (InfluxQueryError, httpx.HTTPError):
        return []


def wait_rows(
    influx: InfluxDB1Server, query: str, count: int, *logs: Any, timeout: float = 60
) -> list[dict[str, Any]]:
    """The query's rows once there are at least ``count``; else an error with the logs."""
    try:
        wait_until(lambda: len(stored_rows(influx, query)) >= count, timeout, interval=0.25)
    except TimeoutError:
        tails = "\n\n".join(proc.log_tail() for proc in logs)
        got = stored_rows(influx, query)
        raise AssertionError(f"{len(got)} of {count} stored: {got[:5]}\n{tails}") from None
    return stored_rows(influx, query)


def fills_query(device: str) -> str:
    return f"SELECT fill_pct FROM ewaste_bin WHERE device_id = '{device}'"


def stored_fill_timestamps(influx: InfluxDB1Server, device: str) -> list[int]:
    return [int(row["time"]) for row in stored_rows(influx, fills_query(device))]


def wait_stored_fills(influx: InfluxDB1Server, device: str, count: int, *logs: Any) -> None:
    wait_rows(influx, fills_query(device), count, *logs, timeout=90)


def start_pipeline(
    tmp_path: Path,
    ours: MosquittoServer,
    influx: InfluxDB1Server,
    ingest_factory: IngestFactory,
    bridges: Callable[..., BridgeProcess],
    *sources: str,
) -> tuple[IngestProcess, BridgeProcess]:
    devices = write_registry(tmp_path)
    ingest = ingest_factory(v1_env(ours, influx, DEVICES_FILE=str(devices))).start()
    ingest.wait_connected()
    bridge = bridges(bridge_env(ours.url, devices, write_sources(tmp_path, *sources))).start()
    wait_until(lambda: bridge.health()[0] == 200, timeout=30)
    return ingest, bridge


def test_lorawan_bin_through_ttn_crossing_90_pct_fires_bin_full_and_dispatches(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    network_server: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    bridges: Callable[..., BridgeProcess],
    mqtt_subscriber: Callable[..., MessageCollector],
) -> None:
    ingest, bridge = start_pipeline(
        tmp_path, mosquitto, influxdb1, ingest_factory, bridges, ttn_source(network_server.url)
    )
    run = alerts_run(
        tmp_path,
        mosquitto.url,
        "facility-alerts-bridge-test",
        DEVICES_FILE=str(tmp_path / "devices.yaml"),
        ALERTS_INFLUX_ENABLED="false",
    )
    (tmp_path / "rules.yaml").write_text(bin_full_rules('clear: "< 60"', "dispatch: true"))
    requests = mqtt_subscriber(mosquitto.url, f"{P}/dispatch/requests")
    alerts = mqtt_subscriber(mosquitto.url, f"{P}/alerts/bin_full/#")
    proc = run.start()
    try:
        wait_alerts_ready(bound_port(run.port_file, proc))
        now = int(time.time() * 1000)
        uplinks = [
            ttn_uplink(now - 3000 + i * 1000, fill, f_cnt=i) for i, fill in enumerate((50, 75, 95))
        ]
        publish_acknowledged(network_server, uplinks, client_id="ttn-network-server")
        request = DispatchRequest.model_validate_json(requests.wait_for(1, 30)[0][1])
    finally:
        run.stop(proc, signal.SIGTERM)
    events = [AlertEvent.model_validate_json(m.payload) for m in alerts.received]
    assert [(e.state, e.device_id) for e in events] == [("firing", LORA_BIN)]
    (stop,) = request.stops
    assert stop.device_id == LORA_BIN and stop.fill_pct == 95.0
    assert stop.weight_estimated  # a lid sensor weighs nothing: kg from fill x volume x density
    assert stop.est_weight_kg == round(0.95 * 1100 * 0.2, 1)
    wait_stored_fills(influxdb1, LORA_BIN, 3, ingest, bridge)
    rows = influxdb1.query(
        f"SELECT fill_pct, tilted, zone FROM ewaste_bin WHERE device_id = '{LORA_BIN}'",
        db="facility",
    )
    assert [r["fill_pct"] for r in rows] == [50.0, 75.0, 95.0]
    assert all(r["tilted"] is True and r["zone"] == "cheolsan" for r in rows)


def test_shelly_meter_readings_land_in_energy(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    bridges: Callable[..., BridgeProcess],
) -> None:
    ingest, bridge = start_pipeline(
        tmp_path, mosquitto, influxdb1, ingest_factory, bridges, SHELLY_SOURCE
    )
    t0 = time.time() - 600
    frames = [shelly_status(t0 + i * 60 + 0.25, 100.0 + i, 13371.121 + i) for i in range(5)]
    publish_acknowledged(mosquitto, frames, client_id="shelly-device")

    query = "SELECT load_power_w, load_energy_wh FROM energy WHERE device_id = 'nzc-shelly-pro4'"
    rows = wait_rows(influxdb1, query, 5, bridge, ingest)
    assert [r["load_power_w"] for r in rows] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert [r["load_energy_wh"] for r in rows] == [13371.121 + i for i in range(5)]
    # params.ts is float seconds: stored at its millisecond
    assert [int(r["time"]) for r in rows] == [ts for _, _, ts in frames]
    assert bridge.terminate() == 0  # SIGTERM: a clean stop


def test_people_counter_through_chirpstack_lands_in_visitors_across_a_reset(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    bridges: Callable[..., BridgeProcess],
) -> None:
    ingest, bridge = start_pipeline(
        tmp_path, mosquitto, influxdb1, ingest_factory, bridges, CHIRPSTACK_GATES_SOURCE
    )
    t0 = int(time.time() * 1000) - 600_000
    counts = [(72, 200), (80, 203), (3, 1), (9, 4)]  # the counter restarted after the second
    uplinks = [chirpstack_people_count(t0 + i * 60_000, e, x) for i, (e, x) in enumerate(counts)]
    publish_acknowledged(mosquitto, uplinks, client_id="chirpstack")

    query = "SELECT entries_total, exits_total FROM visitors WHERE device_id = 'uac-gate-lora'"
    rows = wait_rows(influxdb1, query, len(counts), bridge, ingest)
    # ChirpStack's floats (72.0) stored as the integers visitor counts are, the reset kept
    assert [(r["entries_total"], r["exits_total"]) for r in rows] == counts
    assert all(isinstance(r["entries_total"], int) for r in rows)


@pytest.mark.parametrize("on_our_broker", [False, True], ids=["own-broker", "our-broker"])
def test_bridge_sigkill_mid_stream_loses_nothing(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    network_server: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    bridges: Callable[..., BridgeProcess],
    on_our_broker: bool,
) -> None:
    """Also for a source on our broker, whose messages and PUBACKs share the bridge's one
    link with the readings it publishes."""
    source_server = mosquitto if on_our_broker else network_server
    source = ttn_source(None if on_our_broker else network_server.url)
    ingest, bridge = start_pipeline(tmp_path, mosquitto, influxdb1, ingest_factory, bridges, source)
    base = int(time.time() * 1000) - 3_600_000
    uplinks = [ttn_uplink(base + i, (i % 90) + 1.0, f_cnt=i) for i in range(600)]
    publish_acknowledged(source_server, uplinks[:300], client_id="ttn-network-server")
    wait_until(
        lambda: bridge.metric(labelled("bridge_messages_acked_total", source="ttn-bins")) >= 100,
        timeout=30,
    )
    bridge.kill()  # mid-stream: some uplinks converted, some published, some acknowledged
    publish_acknowledged(source_server, uplinks[300:], client_id="ttn-network-server")
    bridge.start()
    wait_stored_fills(influxdb1, LORA_BIN, 600, ingest, bridge)
    stored = stored_fill_timestamps(influxdb1, LORA_BIN)
    assert sorted(stored) == [ts for _, _, ts in uplinks]  # every one, each once


def test_source_broker_and_our_broker_restarts_lose_nothing(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    network_server: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    bridges: Callable[..., BridgeProcess],
) -> None:
    ingest, bridge = start_pipeline(
        tmp_path, mosquitto, influxdb1, ingest_factory, bridges, ttn_source(network_server.url)
    )
    base = int(time.time() * 1000) - 3_600_000
    uplinks = [ttn_uplink(base + i, 40.0, f_cnt=i) for i in range(300)]
    publish_acknowledged(network_server, uplinks[:100], client_id="ttn-network-server")
    network_server.restart()  # the network server's broker drops us (its session persists)
    publish_acknowledged(network_server, uplinks[100:200], client_id="ttn-network-server")
    mosquitto.restart()  # ours: bridge and ingest reconnect; in-flight PUBLISHes resent
    publish_acknowledged(network_server, uplinks[200:], client_id="ttn-network-server")
    wait_stored_fills(influxdb1, LORA_BIN, 300, ingest, bridge)
    assert sorted(stored_fill_timestamps(influxdb1, LORA_BIN)) == [ts for _, _, ts in uplinks]


def test_bad_input_becomes_dead_letters_and_the_bridge_goes_on(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    influxdb1: InfluxDB1Server,
    ingest_factory: IngestFactory,
    bridges: Callable[..., BridgeProcess],
    mqtt_subscriber: Callable[..., MessageCollector],
) -> None:
    # The network server's uplinks arrive on our own broker this time (no broker: section).
    ingest, bridge = start_pipeline(
        tmp_path, mosquitto, influxdb1, ingest_factory, bridges, ttn_source(None)
    )
    letters = mqtt_subscriber(mosquitto.url, f"{P}/deadletter/bridge")
    now = int(time.time() * 1000) - 60_000
    topic, good, _ = ttn_uplink(now, 30.0)
    unknown = ttn_uplink(now + 1, 30.0, dev_eui="0000000000000042")
    bad: list[tuple[str, bytes]] = [
        (topic, b"{not json"),
        (topic, b'{"end_device_ids": {"dev_eui": "70B3D57ED005B89A"}, "uplink_message": {}}'),
        (unknown[0], unknown[1]),
        (topic, b"[" * 20_000 + b"]" * 20_000),
        (topic, b"x" * 300_000),
        (topic, good.replace(b'"battery": 92', b'"battery": 920')),  # wrong units: 920 %
    ]
    for bad_topic, payload in bad:
        publish(mosquitto.url, bad_topic, payload)
    join_topic, join, _ = ttn_join()
    publish(mosquitto.url, join_topic, join)
    publish(mosquitto.url, topic, good)
    codes = [DeadLetter.model_validate_json(p).code for _, p in letters.wait_for(len(bad), 30)]
    assert codes == [
        "invalid_json",
        "no_decoded_payload",
        "unknown_device",
        "too_deep",
        "too_large",
        "out_of_range",
    ]
    wait_stored_fills(influxdb1, LORA_BIN, 1, ingest, bridge)
    assert bridge.health()[0] == 200  # alive, connected
    skipped = labelled("bridge_messages_skipped_total", reason="join", source="ttn-bins")
    assert bridge.metric(skipped) == 1
    assert bridge.metric(labelled("bridge_messages_acked_total", source="ttn-bins")) == len(bad) + 2


def run_bridge_to_its_exit(
    tmp_path: Path, devices: Path, sources: Path
) -> subprocess.CompletedProcess[bytes]:
    """Run facility-bridge with only these files (no MQTT_/BRIDGE_ setting of the caller's)
    against a broker port nothing listens on: for the errors it must stop at before it
    connects."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "BRIDGE_"))}
    env.update(bridge_env("mqtt://127.0.0.1:1", devices, sources), SECRETS_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "services.bridge"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_invalid_sources_file_stops_the_bridge_with_exit_2_naming_the_line(tmp_path: Path) -> None:
    devices = write_registry(tmp_path)
    sources = write_sources(tmp_path, ttn_source(None).replace("unit: mm", "unit: furlong"))
    done = run_bridge_to_its_exit(tmp_path, devices, sources)
    assert done.returncode == 2
    assert done.stderr.decode().startswith(
        f"facility-bridge: BRIDGE_SOURCES_FILE: {sources}: line 7: "
        "sources[0].fields.fill_pct.unit: unknown unit 'furlong'"
    )


def test_a_reading_our_broker_refuses_holds_its_source_message_and_turns_health_red(
    tmp_path: Path,
    server_factory: Callable[..., MosquittoServer],
    bridges: Callable[..., BridgeProcess],
) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic read #\ntopic write v3/#\n")  # the bridge may not write telemetry
    broker = server_factory(MosquittoServer, extra_config=[f"acl_file {acl}"])
    devices = write_registry(tmp_path)
    sources = write_sources(tmp_path, ttn_source(None))
    bridge = bridges(bridge_env(broker.url, devices, sources)).start()
    bridge.wait_connected()
    topic, payload, _ = ttn_uplink(int(time.time() * 1000) - 1000, 50.0)
    publish(broker.url, topic, payload)
    wait_until(lambda: bridge.metric("bridge_readings_refused_total") == 1, timeout=30)
    status, health = bridge.health()
    assert status == 503 and health["refused_readings"] == 1
    assert bridge.metric(labelled("bridge_messages_acked_total", source="ttn-bins")) == 0


def test_a_missing_broker_secret_stops_the_bridge_with_exit_2_naming_it(tmp_path: Path) -> None:
    devices = write_registry(tmp_path)
    source = ttn_source("mqtts://eu1.cloud.thethings.network:8883").replace(
        "'}\n", "', username: app@ttn, password_secret: ttn_api_key}\n", 1
    )
    sources = write_sources(tmp_path, source)
    done = run_bridge_to_its_exit(tmp_path, devices, sources)
    assert done.returncode == 2, done.stderr
    assert "password_secret 'ttn_api_key'" in done.stderr.decode()
    assert "BRIDGE_SECRET_TTN_API_KEY" in done.stderr.decode()
