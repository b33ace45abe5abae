"""The services' shared wiring: SIGTERM and SIGINT turn into the stop event; ``run_service``
serves /healthz on the port it reports, stops the service in order, and exits 0, 1 or 2."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from common.runtime import HttpEndpoint, StartupError, run_service, stop_on_signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_sets_the_stop_event(signum: int, caplog: pytest.LogCaptureFixture) -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop = stop_on_signals(logging.getLogger("test"))
        assert not stop.is_set()
        with caplog.at_level(logging.INFO):
            os.kill(os.getpid(), signum)  # handled in the main thread before kill() returns
            assert stop.wait(5)
        assert caplog.records[-1].__dict__["signal"] == signal.Signals(signum).name
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class FakeService:
    """Records the runtime's calls."""

    def __init__(self) -> None:
        self.metrics = SimpleNamespace(registry=CollectorRegistry())
        self.calls: list[str] = []
        self.stop_timeout: float | None = None

    def start(self) -> None:
        self.calls.append("start")

    def stop(self, timeout_s: float, /) -> bool:
        self.calls.append("stop")
        self.stop_timeout = timeout_s
        return True

    def health(self) -> Mapping[str, Any]:
        return {"healthy": True}


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in previous.items():
        signal.signal(s, handler)


@pytest.mark.usefixtures("keep_signal_handlers")
def test_run_service_serves_health_on_a_reported_port_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port_file = tmp_path / "http.port"

    class Probing(FakeService):
        def start(self) -> None:
            # Bound before start(): /healthz answers on the port the file reports.
            port = int(port_file.read_text())
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                assert json.loads(r.read()) == {"healthy": True}
            self.calls.append("probed")
            os.kill(os.getpid(), signal.SIGTERM)

    service = Probing()
    endpoint = HttpEndpoint("127.0.0.1", 0, "TEST_HTTP_PORT", port_file)
    assert run_service("test-program", lambda: service, endpoint, 3.5) == 0
    assert service.calls == ["probed", "stop"] and service.stop_timeout == 3.5


@pytest.mark.usefixtures("keep_signal_handlers")
def test_run_service_exits_1_when_the_service_reports_a_failure() -> None:
    service = FakeService()
    endpoint = HttpEndpoint("127.0.0.1", 0, "TEST_HTTP_PORT")
    status = run_service("test-program", lambda: service, endpoint, 1.0, failure=lambda _s: "broke")
    assert status == 1 and service.calls == ["start", "stop"]


@pytest.mark.usefixtures("keep_signal_handlers")
def test_run_service_exits_2_on_startup_error(capsys: pytest.CaptureFixture[str]) -> None:
    def build() -> FakeService:
        raise StartupError("DEVICES_FILE: line 3: bad")

    endpoint = HttpEndpoint("127.0.0.1", 0, "TEST_HTTP_PORT")
    assert run_service("test-program", build, endpoint, 1.0) == 2
    assert capsys.readouterr().err == "test-program: DEVICES_FILE: line 3: bad\n"


@pytest.mark.usefixtures("keep_signal_handlers")
def test_run_service_exits_2_naming_the_port_setting_when_the_port_is_taken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        endpoint = HttpEndpoint("127.0.0.1", taken.getsockname()[1], "TEST_HTTP_PORT")
        service = FakeService()
        assert run_service("test-program", lambda: service, endpoint, 1.0) == 2
    assert capsys.readouterr().err.startswith("test-program: invalid setting TEST_HTTP_PORT: ")
    assert service.calls == []
