"""Start, health and stop wiring shared by the long-running services (ingest, alerts).

Settings (invalid -> one line naming the variable, exit 2), logging, the /healthz + /metrics
endpoint, SIGTERM/SIGINT -> one stop event, then the service's ordered stop within its
shutdown timeout. The programs' ``__main__`` modules only parse arguments and build the service.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry

from common.observability import ServiceHttpServer, setup_logging
from common.settings import CommonSettings, load_or_exit

log = logging.getLogger(__name__)

S = TypeVar("S", bound=CommonSettings)

CONFIG_EXIT = 2
"""Exit status for configuration the program rejects at start (the contract's rule)."""

_WATCH_EVERY_S = 1.0


class StartupError(Exception):
    """Configuration that only shows its problem when used (an invalid registry or rules file);
    the message names the setting. The runtime prints ``program: message`` and exits 2."""


class _HasRegistry(Protocol):
    @property
    def registry(self) -> CollectorRegistry: ...


class Service(Protocol):
    """What the runtime drives: ``start()``, ``health()`` per /healthz request, and an
    ordered ``stop(timeout_s)`` that returns once stopped or the timeout has passed."""

    @property
    def metrics(self) -> _HasRegistry: ...

    def start(self) -> None: ...

    def stop(self, timeout_s: float, /) -> object: ...

    def health(self) -> Mapping[str, Any]: ...


T = TypeVar("T", bound=Service)


@dataclass(frozen=True, slots=True)
class HttpEndpoint:
    """Where /healthz and /metrics listen; ``setting`` names the port's variable in errors.

    Port 0 binds any free port; the bound port is logged (``http_port``) and, if
    ``HTTP_PORT_FILE`` is set, written there, so a supervisor or test never races for one.
    """

    host: str
    port: int
    setting: str
    port_file: Path | None = None


def load_program_settings(settings_cls: type[S], program: str) -> S:
    """Settings from the environment (exit 2 naming the variable if invalid), then logging."""
    settings = load_or_exit(settings_cls, program)
    setup_logging(program, settings.log_level, settings.log_format)
    return settings


def stop_on_signals(logger: logging.Logger, stop: threading.Event | None = None) -> threading.Event:
    """Set (and return) ``stop`` on SIGTERM/SIGINT, logging which signal asked for it.

    Call from the main thread; the program's main loop waits on the event and shuts down in
    order (drain, acknowledge, disconnect) instead of dying inside a signal handler.
    """
    event = stop if stop is not None else threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("stopping", extra={"signal": signal.Signals(signum).name})
        event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return event


def write_port_file(path: Path, port: int) -> None:
    """Write the bound port atomically, so a reader never sees a half-written number."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{port}\n")
    os.replace(partial, path)


def _no_failure(_service: object) -> None:
    return None


def run_service(
    program: str,
    build: Callable[[], T],
    http: HttpEndpoint,
    shutdown_timeout_s: float,
    *,
    failure: Callable[[T], str | None] = _no_failure,
    details: Mapping[str, object] | None = None,
) -> int:
    """Build, serve /healthz + /metrics, start, and run until SIGTERM/SIGINT.

    0 after a signal-requested stop; 1 if ``failure(service)`` reports the service broke on its own
    (checked every second; it is stopped in order first, so a supervisor restarts it); 2 for
    configuration rejected at start (:class:`StartupError`, or a port that cannot be bound).
    ``details`` adds fields to the ``started`` log line.
    """
    stop = stop_on_signals(log)
    try:
        service = build()
    except StartupError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return CONFIG_EXIT
    try:
        server = ServiceHttpServer(http.host, http.port, service.metrics.registry, service.health)
    except OSError as exc:
        print(f"{program}: invalid setting {http.setting}: {exc}", file=sys.stderr)
        return CONFIG_EXIT
    server.start()
    if http.port_file is not None:
        write_port_file(http.port_file, server.port)
    service.start()
    log.info("started", extra={**(details or {}), "http_port": server.port})
    status = 0
    while not stop.wait(_WATCH_EVERY_S):
        broken = failure(service)
        if broken is not None:
            log.error("stopping after a failure", extra={"failure": broken})
            status = 1
            break
    service.stop(shutdown_timeout_s)
    server.stop()
    log.info("stopped", extra={"exit_status": status})
    return status
