"""Shared fixtures: real Mosquitto / InfluxDB 1.x / VictoriaMetrics from ``tests.servers``.

Function-scoped ``mosquitto``, ``influxdb1``, ``victoria_metrics`` are fresh servers in the
test's ``tmp_path`` (free to stop, kill, restart or fill with data). The ``*_session``
variants are shared by the whole run: cheap, but use them read-only or with names unique to
your test. ``server_factory(cls, **kwargs)`` starts a server with non-default settings
(e.g. a mosquitto ``extra_config`` with ACLs) and cleans it up. ``mqtt_subscriber(url,
topic_filter)`` returns a started ``tests.helpers.MessageCollector``, stopped at teardown.

A missing binary skips the test with an install hint, or fails it when ``CI`` is
``true``/``1``. Tests using any of these fixtures are marked ``servers`` automatically
(``pytest -m "not servers"`` runs without them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.helpers import MessageCollector
from tests.servers import (
    InfluxDB1Server,
    MosquittoServer,
    Server,
    VictoriaMetricsServer,
)

S = TypeVar("S", bound=Server)

SERVER_FIXTURES = frozenset(
    {
        "mosquitto",
        "influxdb1",
        "victoria_metrics",
        "mosquitto_session",
        "influxdb1_session",
        "victoria_metrics_session",
        "server_factory",
    }
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def require_binary(cls: type[Server]) -> None:
    """Skip (or, under CI, fail) the current test when ``cls``'s binary is missing."""
    if cls.is_installed():
        return
    message = (
        f"{cls.name} ({cls.binary_name}) not installed: {cls.install_hint}; "
        f"or point ${cls.binary_env_var} at the binary"
    )
    if _in_ci():
        pytest.fail(f"CI={os.environ.get('CI')}: {message}", pytrace=False)
    pytest.skip(message)


def _started(cls: type[S], data_dir: Path, **kwargs: Any) -> S:
    require_binary(cls)
    server = cls(data_dir, **kwargs)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


# -- function scope: fresh servers in tmp_path ------------------------------------------------


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = _started(MosquittoServer, tmp_path / "mosquitto")
    yield server
    server.close()


@pytest.fixture
def influxdb1(tmp_path: Path) -> Iterator[InfluxDB1Server]:
    server = _started(InfluxDB1Server, tmp_path / "influxdb")
    yield server
    server.close()


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    server = _started(VictoriaMetricsServer, tmp_path / "victoria-metrics")
    yield server
    server.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``server_factory(MosquittoServer, extra_config=[...])`` -> a started server.

    Each gets its own directory under ``tmp_path``; all are closed at teardown.
    """
    servers: list[Server] = []

    def make(cls: type[S], **kwargs: Any) -> S:
        data_dir = tmp_path / f"{cls.name}-{len(servers) + 1}"
        server = _started(cls, data_dir, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        server.close()


# -- session scope: shared, read-only use -----------------------------------------------------


@pytest.fixture(scope="session")
def mosquitto_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    server = _started(MosquittoServer, tmp_path_factory.mktemp("mosquitto-session"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def influxdb1_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1Server]:
    server = _started(InfluxDB1Server, tmp_path_factory.mktemp("influxdb-session"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def victoria_metrics_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[VictoriaMetricsServer]:
    server = _started(VictoriaMetricsServer, tmp_path_factory.mktemp("victoria-metrics-session"))
    yield server
    server.close()


# -- MQTT helpers -----------------------------------------------------------------------------


@pytest.fixture
def mqtt_subscriber() -> Iterator[Callable[..., MessageCollector]]:
    """``mqtt_subscriber(url, "topic/#", qos=1, ...)`` -> a subscribed MessageCollector."""
    collectors: list[MessageCollector] = []

    def make(url: str, topic_filter: str | Sequence[str], **kwargs: Any) -> MessageCollector:
        collector = MessageCollector(url, topic_filter, **kwargs).start()
        collectors.append(collector)
        return collector

    yield make
    for collector in collectors:
        collector.stop()
