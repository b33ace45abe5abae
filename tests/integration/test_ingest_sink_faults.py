"""facility-ingest against a database that fails without going away, seen through a loopback
fault proxy in front of real InfluxDB 1.x (API v1) and VictoriaMetrics (API v2): a proxy
answering 400 to everything, and a black hole that accepts requests and never answers. Every
acknowledged reading must be stored exactly once after the fault is healed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.integration.fault_proxy import FaultProxy, proxies
from tests.integration.ingest_support import (
    IngestFactory,
    IngestProcess,
    Publisher,
    ingest_processes,
    labelled,
    log_mentions,
    publish_acknowledged,
    readings,
    wait_exactly_stored,
)
from tests.servers import InfluxDB1Server, MosquittoServer, VictoriaMetricsServer

DEAD_LETTERED = labelled("ingest_messages_rejected_total", reason="sink_rejected")


@pytest.fixture
def ingest_factory(tmp_path: Path) -> Iterator[IngestFactory]:
    yield from ingest_processes(tmp_path)


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str], FaultProxy]]:
    yield from proxies(FaultProxy)


def wait_vm_exactly(
    vm: VictoriaMetricsServer, expected: list[tuple[str, bytes, int]], ingest: IngestProcess
) -> None:
    """VictoriaMetrics keeps every sample written (no overwrite), so a duplicate shows."""

    def stamps() -> list[int]:
        return sorted(s.timestamp for s in vm.samples('{__name__="ewaste_bin_weight_kg"}'))

    want = sorted(ts for _, _, ts in expected)
    try:
        wait_until(lambda: len(stamps()) >= len(want), timeout=90, interval=0.5)
    except TimeoutError:
        raise AssertionError(
            f"{len(stamps())} of {len(want)} stored:\n{ingest.log_tail()}"
        ) from None
    assert stamps() == want


@dataclass(frozen=True, slots=True)
class Sink:
    """One real database behind the proxy, and how facility-ingest talks to it."""

    url: str
    env: dict[str, str]  # INFLUX_* settings for facility-ingest, but the URL
    write_path: str
    wait_exactly_stored: Callable[[list[tuple[str, bytes, int]], IngestProcess], None]


@pytest.fixture(params=["influxdb1", "victoria_metrics"])
def sink(request: pytest.FixtureRequest) -> Sink:
    if request.param == "influxdb1":
        influx: InfluxDB1Server = request.getfixturevalue("influxdb1")
        return Sink(
            influx.url,
            {"INFLUX_API_VERSION": "1"},
            "/write",
            lambda expected, ingest: wait_exactly_stored(influx, expected, ingest),
        )
    vm: VictoriaMetricsServer = request.getfixturevalue("victoria_metrics")
    return Sink(
        vm.url,
        {"INFLUX_API_VERSION": "2", "INFLUX_TOKEN": "unused-by-victoria-metrics"},
        "/api/v2/write",
        lambda expected, ingest: wait_vm_exactly(vm, expected, ingest),
    )


def start_behind_proxy(
    mosquitto: MosquittoServer,
    sink: Sink,
    ingest_factory: IngestFactory,
    fault_proxy: Callable[[str], FaultProxy],
    **extra: str,
) -> tuple[FaultProxy, IngestProcess]:
    """A fault proxy (forwarding, for now) in front of ``sink``, and a connected
    facility-ingest writing through it."""
    proxy = fault_proxy(sink.url)
    env = {"MQTT_URL": mosquitto.url, "INFLUX_URL": proxy.url, **sink.env, **extra}
    ingest = ingest_factory(env).start()
    ingest.wait_connected()
    return proxy, ingest


# -- a systemic 400 --------------------------------------------------------------------------


def assert_systemic_400_spooled_not_dead_lettered(
    ingest: IngestProcess, proxy: FaultProxy, expected: list[tuple[str, bytes, int]]
) -> None:
    wait_until(lambda: ingest.metric("ingest_points_spooled_total") >= len(expected), timeout=60)
    status, health = ingest.health()
    assert status == 503, health
    assert health["sink"]["state"] == "refused" and health["sink"]["last_status"] == 400
    assert ingest.metric(DEAD_LETTERED) == 0
    # A write or two per batch and the spool's replay attempts; not ~2 per reading.
    assert proxy.count("refuse400", "/write") + proxy.count("refuse400", "/api/v2/write") < 40
    assert log_mentions(ingest, "check INFLUX_URL")


def test_a_proxy_answering_400_to_everything_loses_nothing(
    mosquitto: MosquittoServer,
    sink: Sink,
    ingest_factory: IngestFactory,
    fault_proxy: Callable[[str], FaultProxy],
) -> None:
    proxy, ingest = start_behind_proxy(mosquitto, sink, ingest_factory, fault_proxy)
    proxy.fail("refuse400")
    expected = readings(201)
    publish_acknowledged(mosquitto, expected)
    assert_systemic_400_spooled_not_dead_lettered(ingest, proxy, expected)
    proxy.heal()
    sink.wait_exactly_stored(expected, ingest)
    wait_until(lambda: ingest.health()[0] == 200, timeout=30)
    assert ingest.metric(DEAD_LETTERED) == 0


# -- a black hole ----------------------------------------------------------------------------

# A write waits up to 2 s for its answer; a probe 0.2 s.
BLACK_HOLE_ENV = {"INGEST_WRITE_TIMEOUT_MS": "2000", "INGEST_PROBE_TIMEOUT_MS": "200"}


def run_through_black_hole(
    mosquitto: MosquittoServer, ingest: IngestProcess, proxy: FaultProxy, write_path: str
) -> list[tuple[str, bytes, int]]:
    """Readings before (stored), then a black hole while 1,200 more arrive over ~4 s; returns
    everything published once the hole is healed."""
    before = readings(300)
    publish_acknowledged(mosquitto, before)
    wait_until(lambda: ingest.metric("ingest_points_stored_total") >= len(before), timeout=60)
    proxy.fail("blackhole")
    during = readings(1200, start=len(before))
    publisher = Publisher(mosquitto.host, mosquitto.port).publish_in_background(during, 300)
    # Spooled means acknowledged: every reading of the fault is acked while it lasts.
    wait_until(lambda: ingest.metric("ingest_points_spooled_total") >= len(during), timeout=60)
    publisher.wait_acknowledged()
    publisher.close()
    status, health = ingest.health()
    assert status == 503 and health["sink"]["state"] == "unreachable", health
    # One write waited out its timeout and opened the breaker; every later batch was spooled
    # without a write, and the database was only probed (short timeout) until it answered.
    assert proxy.count("blackhole", write_path) == 1
    assert proxy.count("blackhole", "/ping") >= 1
    assert ingest.metric("ingest_write_retries_total") == 0
    proxy.heal()
    return before + during


def test_a_black_hole_costs_one_write_timeout_and_loses_nothing(
    mosquitto: MosquittoServer,
    sink: Sink,
    ingest_factory: IngestFactory,
    fault_proxy: Callable[[str], FaultProxy],
) -> None:
    proxy, ingest = start_behind_proxy(
        mosquitto, sink, ingest_factory, fault_proxy, **BLACK_HOLE_ENV
    )
    expected = run_through_black_hole(mosquitto, ingest, proxy, sink.write_path)
    sink.wait_exactly_stored(expected, ingest)
    wait_until(lambda: ingest.health()[0] == 200, timeout=30)
    wait_until(lambda: ingest.health()[1]["spool"]["batches"] == 0, timeout=30)
