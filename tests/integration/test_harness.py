"""The real-server harness itself: start, answer, store, stop, restart, survive, kill."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_binary
from tests.helpers import (
    MessageCollector,
    collect_messages,
    connack_code,
    publish,
)
from tests.servers import (
    InfluxDB1Server,
    InfluxQueryError,
    MosquittoServer,
    Server,
    ServerNotInstalledError,
    ServerStartError,
    VictoriaMetricsServer,
    VmSample,
    free_ports,
)


def _refuses_connections(server: Server) -> bool:
    try:
        with socket.create_connection((server.host, server.port), timeout=1.0):
            return False
    except OSError:
        return True


def _assert_stopped(server: Server) -> None:
    assert not server.is_running
    assert server.pid is None
    assert _refuses_connections(server)


# -- Mosquitto --------------------------------------------------------------------------------


def test_mosquitto_answers_and_keeps_retained_messages_across_restart(
    mosquitto: MosquittoServer,
) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    assert mosquitto.is_running
    assert connack_code(mosquitto.url) == 0
    publish(mosquitto.url, "harness/retained", b"kept", qos=1, retain=True)
    assert collect_messages(mosquitto.url, "harness/#", 1) == [("harness/retained", b"kept")]

    port, pid = mosquitto.port, mosquitto.pid
    assert mosquitto.stop() == 0
    _assert_stopped(mosquitto)

    mosquitto.restart()
    assert (mosquitto.port, mosquitto.is_running) == (port, True)
    assert mosquitto.pid != pid
    assert collect_messages(mosquitto.url, "harness/#", 1) == [("harness/retained", b"kept")]
    mosquitto.stop()
    _assert_stopped(mosquitto)


def test_mosquitto_live_messages_reach_a_collector(
    mosquitto: MosquittoServer, mqtt_subscriber: Callable[..., MessageCollector]
) -> None:
    collector = mqtt_subscriber(mosquitto.url, ["a/+", "b/#"], qos=1)
    for i in range(5):
        publish(mosquitto.url, f"a/{i}", f"m{i}".encode(), qos=1)
    publish(mosquitto.url, "b/x/y", b"deep", qos=0)
    got = collector.wait_for(6, timeout=10)
    assert sorted(got) == sorted(
        [(f"a/{i}", f"m{i}".encode()) for i in range(5)] + [("b/x/y", b"deep")]
    )
    assert not any(m.retain for m in collector.received)


def test_mosquitto_kill_then_restart(mosquitto: MosquittoServer) -> None:
    publish(mosquitto.url, "harness/crash", b"on-disk", retain=True)
    mosquitto.wait_until_persisted(b"on-disk")  # autosave_interval 1 s
    assert mosquitto.kill() == -9
    _assert_stopped(mosquitto)
    mosquitto.restart()
    assert connack_code(mosquitto.url) == 0
    assert collect_messages(mosquitto.url, "harness/crash", 1) == [("harness/crash", b"on-disk")]


def test_mosquitto_extra_config_replaces_generated_options(
    server_factory: Callable[..., Any],
) -> None:
    broker: MosquittoServer = server_factory(
        MosquittoServer, extra_config=["allow_anonymous false"]
    )
    config = broker.config_path.read_text()
    assert "allow_anonymous false" in config
    assert "allow_anonymous true" not in config
    # Started (the readiness probe accepts any CONNACK) yet refuses anonymous clients.
    assert connack_code(broker.url) == 0x87  # paho maps v3.1.1 "not authorised" (5) to 0x87
    with pytest.raises(ConnectionError):
        collect_messages(broker.url, "#", 1, timeout=2)


@pytest.mark.servers
def test_first_start_moves_off_a_taken_port(tmp_path: Path) -> None:
    require_binary(MosquittoServer)
    broker = MosquittoServer(tmp_path / "mqtt")
    taken = broker.port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with broker:
            assert broker.port != taken
            assert connack_code(broker.url) == 0
            broker.stop()
            # From now on the port is pinned: a restart onto a taken port must fail clearly.
            with socket.socket() as second:
                # SO_REUSEADDR: the broker's closed connections may linger in TIME_WAIT.
                second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                second.bind(("127.0.0.1", broker.port))
                second.listen()
                with pytest.raises(ServerStartError, match=r"(?is)exited with status.*in use"):
                    broker.start()
                assert not broker.is_running
    assert not broker.is_running


@pytest.mark.servers
def test_start_timeout_kills_and_reports_log(tmp_path: Path) -> None:
    require_binary(VictoriaMetricsServer)
    # Go flags: the last -httpListenAddr wins, so it never answers on `port`.
    elsewhere = f"-httpListenAddr=127.0.0.1:{free_ports()[0]}"
    vm = VictoriaMetricsServer(tmp_path / "vm", extra_args=[elsewhere], start_timeout=1.0)
    with pytest.raises(ServerStartError, match=r"(?s)did not answer.*within 1s.*build version"):
        vm.start()
    assert not vm.is_running
    assert vm.pid is None


@pytest.mark.parametrize("ci", ["", "false", "true", "1"])
def test_missing_binary_skips_or_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str
) -> None:
    monkeypatch.setenv("VICTORIA_METRICS_BIN", str(tmp_path / "no-such-binary"))
    monkeypatch.setenv("CI", ci)
    assert not VictoriaMetricsServer.is_installed()
    with pytest.raises(ServerNotInstalledError, match="apt-get install"):
        VictoriaMetricsServer(tmp_path / "vm")
    expected = pytest.fail.Exception if ci in ("true", "1") else pytest.skip.Exception
    with pytest.raises(expected, match=r"victoria-metrics .* not installed: apt-get install"):
        require_binary(VictoriaMetricsServer)


# -- InfluxDB 1.x -----------------------------------------------------------------------------


LINES = [
    "tank,site=north,unit=t1 level=0.5,temp=21.25 1700000000000",
    "tank,site=north,unit=t1 level=0.75,temp=21.5 1700000060000",
    'tank,site=south,unit=t2 level=0.125,alarm=true,note="ok",count=3i 1700000000123',
]


def test_influxdb_writes_queries_and_keeps_data_across_restart(influxdb1: InfluxDB1Server) -> None:
    assert influxdb1.url == f"http://127.0.0.1:{influxdb1.port}"
    assert influxdb1.rpc_port not in (influxdb1.port, 8088)
    assert httpx.get(f"{influxdb1.url}/ping", trust_env=False).status_code == 204
    influxdb1.create_database("facility")
    influxdb1.write(LINES, "facility", precision="ms")

    query = "SELECT * FROM tank GROUP BY site ORDER BY time"
    expected = [
        {"site": "north", "time": 1700000000000, "unit": "t1", "level": 0.5, "temp": 21.25,
         "alarm": None, "note": None, "count": None},
        {"site": "north", "time": 1700000060000, "unit": "t1", "level": 0.75, "temp": 21.5,
         "alarm": None, "note": None, "count": None},
        {"site": "south", "time": 1700000000123, "unit": "t2", "level": 0.125, "temp": None,
         "alarm": True, "note": "ok", "count": 3},
    ]  # fmt: skip
    assert influxdb1.query(query, "facility") == expected
    assert influxdb1.query("SHOW DATABASES") == [{"name": "facility"}]

    port = influxdb1.port
    influxdb1.stop()
    _assert_stopped(influxdb1)
    influxdb1.restart()
    assert influxdb1.port == port
    assert influxdb1.query(query, "facility") == expected


def test_influxdb_kill_then_restart_keeps_acknowledged_writes(influxdb1: InfluxDB1Server) -> None:
    influxdb1.create_database("crash")
    influxdb1.write("m,k=a v=1 1700000000000", "crash")
    assert influxdb1.kill() == -9
    _assert_stopped(influxdb1)
    influxdb1.restart()
    assert influxdb1.query("SELECT v FROM m", "crash") == [{"time": 1700000000000, "v": 1.0}]


def test_influxdb_query_errors_are_raised(influxdb1_session: InfluxDB1Server) -> None:
    with pytest.raises(InfluxQueryError, match="database not found"):
        influxdb1_session.query("SELECT * FROM nothing", "no_such_db")


# -- VictoriaMetrics --------------------------------------------------------------------------


def test_victoria_metrics_stores_line_protocol_and_keeps_it_across_restart(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    vm = victoria_metrics
    assert httpx.get(f"{vm.url}/health", trust_env=False).text == "OK"
    assert vm.series_count() == 0
    now_ms = int(time.time() * 1000)
    vm.write(
        [
            f"tank,site=north level=0.5,temp=21.25 {now_ms}",
            f"tank,site=north level=0.75 {now_ms + 1000}",
            'tank,site=south level=0.125,alarm=true,note="ok",count=3i 1700000000123',
        ],
        precision="ms",
    )
    expected = [
        VmSample("tank_alarm", {"site": "south"}, 1700000000123, 1.0),
        VmSample("tank_count", {"site": "south"}, 1700000000123, 3.0),
        VmSample("tank_level", {"site": "north"}, now_ms, 0.5),
        VmSample("tank_level", {"site": "north"}, now_ms + 1000, 0.75),
        VmSample("tank_level", {"site": "south"}, 1700000000123, 0.125),
        VmSample("tank_note", {"site": "south"}, 1700000000123, 0.0),  # strings become 0
        VmSample("tank_temp", {"site": "north"}, now_ms, 21.25),
    ]
    assert vm.samples() == expected  # visible right away: samples() force-flushes
    assert vm.series_count() == 6
    assert vm.sample_count('{__name__="tank_level"}') == 3
    exported = vm.export('{__name__="tank_level",site="north"}')
    assert exported == [
        {
            "metric": {"__name__": "tank_level", "site": "north"},
            "values": [0.5, 0.75],
            "timestamps": [now_ms, now_ms + 1000],
        }
    ]

    port = vm.port
    vm.stop()
    _assert_stopped(vm)
    vm.restart()
    assert vm.port == port
    assert vm.samples() == expected


def test_victoria_metrics_write_endpoints_and_precision(
    victoria_metrics_session: VictoriaMetricsServer,
) -> None:
    vm = victoria_metrics_session
    vm.write("prec_test,k=ns v=1 1600000000123456789", precision="ns", endpoint="/write", db="x")
    vm.write("prec_test,k=s v=2 1600000000", precision="s")
    vm.write("prec_test,k=dup v=3 1600000000000\nprec_test,k=dup v=4 1600000000000")
    assert vm.samples('{__name__="prec_test_v"}') == [
        VmSample("prec_test_v", {"db": "x", "k": "ns"}, 1600000000123, 1.0),  # ns -> ms
        VmSample("prec_test_v", {"k": "dup"}, 1600000000000, 3.0),
        VmSample("prec_test_v", {"k": "dup"}, 1600000000000, 4.0),  # both kept
        VmSample("prec_test_v", {"k": "s"}, 1600000000000, 2.0),
    ]


def test_victoria_metrics_kill_then_restart_keeps_persisted_data(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    vm = victoria_metrics
    vm.write("crash,k=a v=1 1700000000000")
    before = vm.samples()  # force-flushes: searchable, but not yet on disk
    assert before == [VmSample("crash_v", {"k": "a"}, 1700000000000, 1.0)]
    vm.persist()  # without this, SIGKILL within ~5 s of the write loses the samples
    assert vm.kill() == -9
    _assert_stopped(vm)
    vm.restart()
    assert vm.samples() == before
