"""Real servers for tests and local development: Mosquitto, InfluxDB 1.x, VictoriaMetrics.

Every server runs as a child process on a free loopback port with its own data directory,
its stdout/stderr appended to ``<data_dir>/<name>.log``. ``start()`` returns only once the
server answers a real request (an MQTT CONNACK, ``/ping`` -> 204, ``/health`` -> 200) and
raises :class:`ServerStartError` with the tail of that log if it dies or does not answer
within ``start_timeout`` seconds. ``stop()`` is SIGTERM then SIGKILL after ``stop_timeout``;
``kill()`` is SIGKILL; ``restart()`` keeps the port(s) and the data directory, so it
exercises what a real restart does to the data.

Typical use::

    with MosquittoServer(tmp_path / "mqtt") as broker:   # started on __enter__
        connect_to(broker.url)                            # mqtt://127.0.0.1:PORT
        broker.restart()

The pytest fixtures built on this live in ``tests/conftest.py``. For a quick manual session,
``python -m tests.servers all`` starts all three in the foreground until Ctrl-C.

Safety nets: servers still running at interpreter exit are stopped (``atexit``), and on Linux
a server started from the main thread gets SIGTERM from the kernel if this process dies
without running ``atexit`` (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self, TypedDict, Unpack

import httpx

from common.proc import die_with_parent

LOOPBACK = "127.0.0.1"
DEFAULT_START_TIMEOUT = 20.0
DEFAULT_STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.05
LOG_TAIL_LINES = 40
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")

__all__ = [
    "LOOPBACK",
    "InfluxDB1Server",
    "InfluxQueryError",
    "MosquittoServer",
    "Server",
    "ServerError",
    "ServerNotInstalledError",
    "ServerOptions",
    "ServerStartError",
    "VictoriaMetricsServer",
    "VmSample",
    "find_binary",
    "free_ports",
    "main",
    "wait_alerts_ready",
]


class ServerError(RuntimeError):
    """Something went wrong driving a server process."""


class ServerNotInstalledError(ServerError):
    """The server's binary is not installed (or not where we look)."""


class ServerStartError(ServerError):
    """The server died during start-up or did not answer in time; the message has its log."""

    def __init__(self, message: str, *, port_in_use: bool = False) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use


class InfluxQueryError(ServerError):
    """InfluxDB answered a query or write with an error."""


def find_binary(name: str, env_var: str | None = None) -> str | None:
    """Path of ``name``: ``$env_var`` if set (None if that is not executable), else PATH,
    else the sbin dirs Debian uses."""
    if env_var and os.environ.get(env_var):
        return shutil.which(os.environ[env_var])
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_ports(count: int = 1, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports the kernel considers free right now (bind-to-port-0 trick).

    All sockets are held open together so the ports differ; they are closed before return,
    so another process may grab one before the server binds it. ``Server.start()`` handles
    that race by picking new ports when the first start fails with "address in use".
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: Path, lines: int = LOG_TAIL_LINES, offset: int = 0) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError as exc:
        return f"(no log: {exc})"
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _pid_listens_on(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` has a TCP socket listening on ``port``; None if unknowable.

    Guards against a foreign server that grabbed "our" port answering our readiness probe.
    """
    try:
        import psutil
    except ImportError:
        return None
    try:
        proc = psutil.Process(pid)
        conns = proc.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


_LIVE: set[Server] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop(timeout=5.0)


atexit.register(_stop_all_at_exit)


class ServerOptions(TypedDict, total=False):
    """The keyword options every server takes; subclasses pass them through unchanged."""

    port: int | None
    binary: str | None
    start_timeout: float
    stop_timeout: float


class Server:
    """One server process: ports, data dir, log file, start/stop/kill/restart.

    Subclasses set ``name``/``binary_name``/``scheme`` and implement ``_command()``,
    ``_probe()`` and optionally ``_prepare()`` (write config files before each start).
    """

    name: ClassVar[str] = "server"
    binary_name: ClassVar[str] = ""
    binary_env_var: ClassVar[str] = ""
    install_hint: ClassVar[str] = (
        "apt-get install mosquitto influxdb victoria-metrics (or make test as root)"
    )
    scheme: ClassVar[str] = "http"
    extra_port_count: ClassVar[int] = 0

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        binary: str | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        resolved = binary or self.find_binary()
        if resolved is None:
            raise ServerNotInstalledError(
                f"{self.name}: binary {self.binary_name!r} not found on PATH or in "
                f"{', '.join(SBIN_DIRS)} (set ${self.binary_env_var}); install: {self.install_hint}"
            )
        self.binary = resolved
        if data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
            self._owns_data_dir = True
        else:
            self._data_dir = Path(data_dir).resolve()
            self._data_dir.mkdir(parents=True, exist_ok=True)
            self._owns_data_dir = False
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._ports_pinned = port is not None
        self._port, self._extra_ports = self._pick_ports(port)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.starts = 0  # successful starts so far (1 after start(), 2 after a restart(), ...)

    # -- discovery -------------------------------------------------------------------------

    @classmethod
    def find_binary(cls) -> str | None:
        return find_binary(cls.binary_name, cls.binary_env_var or None)

    @classmethod
    def is_installed(cls) -> bool:
        return cls.find_binary() is not None

    # -- addresses -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._data_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the log (all starts appended, each with a header)."""
        return _tail(self.log_path, lines)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "stopped"
        return f"<{type(self).__name__} {self.url} {state} data_dir={self._data_dir}>"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Launch the server and wait until it answers; returns self."""
        if self.is_running:
            raise ServerError(f"{self.name} already running at {self.url} (pid {self.pid})")
        attempts = 1 if self._ports_pinned else 3
        for attempt in range(1, attempts + 1):
            try:
                self._launch_and_wait()
            except ServerStartError as exc:
                if exc.port_in_use and attempt < attempts:
                    self._port, self._extra_ports = self._pick_ports(None)
                    continue
                raise
            break
        self._ports_pinned = True  # restart() must come back on the same address
        self.starts += 1
        return self

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait up to ``timeout`` (default ``stop_timeout``), then SIGKILL.

        Returns the exit status (None if it was not started). Idempotent.
        """
        proc = self._proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout if timeout is None else timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            self._forget(proc)
        return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL: an unclean crash, nothing gets flushed. Returns the exit status."""
        proc = self._proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        finally:
            self._forget(proc)
        return proc.returncode

    def restart(self) -> Self:
        """Stop (if running) and start again on the same port(s) with the same data dir."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and delete the data directory if this object created it."""
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.is_running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _pick_ports(self, port: int | None) -> tuple[int, list[int]]:
        ports = free_ports(1 + self.extra_port_count)
        if port is not None:
            others = [p for p in ports if p != port]
            if len(others) < self.extra_port_count:
                others = free_ports(self.extra_port_count + 1)
                others = [p for p in others if p != port]
            return port, others[: self.extra_port_count]
        return ports[0], ports[1:]

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        """One readiness check, bounded by a short timeout of its own."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config files etc. before each start (ports may have changed)."""

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _on_stopped(self) -> None:
        """Release per-run resources (HTTP clients)."""

    def _forget(self, proc: subprocess.Popen[bytes]) -> None:
        if self._proc is proc:
            self._proc = None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self._on_stopped()

    def _launch_and_wait(self) -> None:
        self._prepare()
        cmd = self._command()
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"=== {stamp} harness: starting {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._data_dir,
                    env=self._env(),
                    start_new_session=True,  # Ctrl-C in a terminal is ours, not theirs
                    preexec_fn=die_with_parent(),  # main thread only, see there
                )
            except OSError as exc:
                raise ServerStartError(f"{self.name}: cannot run {cmd[0]}: {exc}") from exc
        self._proc = proc
        with _LIVE_LOCK:
            _LIVE.add(self)
        deadline = time.monotonic() + self.start_timeout
        while True:
            status = proc.poll()
            if status is not None:
                self._forget(proc)
                tail = _tail(self.log_path, offset=self._log_offset)
                raise ServerStartError(
                    f"{self.name} exited with status {status} during start-up "
                    f"({' '.join(cmd)}); log {self.log_path}:\n{tail}",
                    port_in_use="address already in use" in tail.lower(),
                )
            if _pid_listens_on(proc.pid, self._port) is not False and self._probe():
                return
            if time.monotonic() > deadline:
                self.kill()
                tail = _tail(self.log_path, offset=self._log_offset)
                raise ServerStartError(
                    f"{self.name} did not answer on {self.url} within {self.start_timeout:g}s "
                    f"({' '.join(cmd)}); killed it; log {self.log_path}:\n{tail}"
                )
            time.sleep(POLL_INTERVAL)  # polling with a deadline, not synchronisation


# ---------------------------------------------------------------------------------------------
# Mosquitto


_probe_ids = itertools.count(1)


def mqtt_handshake(host: str, port: int, timeout: float = 2.0) -> int | None:
    """Open an MQTT 3.1.1 session and return the CONNACK reason code (0 = accepted).

    None if there was no CONNACK (nothing listening, or not an MQTT broker). Any CONNACK,
    even "not authorised", proves the broker is up.
    """
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    codes: list[int] = []

    def on_connect(
        _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        codes.append(int(reason.value) if hasattr(reason, "value") else int(reason))

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"harness-probe-{os.getpid()}-{next(_probe_ids)}",
        protocol=mqtt.MQTTv311,
    )
    client.on_connect = on_connect
    deadline = time.monotonic() + timeout
    try:
        client.connect(host, port, keepalive=10)
        while not codes and time.monotonic() < deadline:
            if client.loop(timeout=POLL_INTERVAL) != mqtt.MQTT_ERR_SUCCESS:
                break
        if codes and codes[0] == 0:
            client.disconnect()
            client.loop(timeout=POLL_INTERVAL)
    except (OSError, ValueError):
        return None
    finally:
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
    return codes[0] if codes else None


class MosquittoServer(Server):
    """Mosquitto 2.x with persistence in the data dir and generous queues.

    The generated ``mosquitto.conf`` listens on ``127.0.0.1:PORT`` only, allows anonymous
    clients, persists to ``<data_dir>/mosquitto.db`` (autosave every ``autosave_interval``
    seconds and on shutdown), queues up to a million QoS>0 messages per client without a
    byte limit, and logs to stderr (-> ``mosquitto.log``).

    ``extra_config`` lines are appended after the listener, so per-listener options apply to
    it; a line whose first word is one of the generated options (other than ``listener``)
    replaces that option, e.g. ``["allow_anonymous false", "password_file /x/passwd"]``.
    ``per_listener_settings`` lines are hoisted to the top, where mosquitto requires them.
    """

    name = "mosquitto"
    binary_name = "mosquitto"
    binary_env_var = "MOSQUITTO_BIN"
    scheme = "mqtt"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        extra_config: Sequence[str] = (),
        autosave_interval: int = 1,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(data_dir, **options)
        self.extra_config = list(extra_config)
        self.autosave_interval = autosave_interval

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def persistence_path(self) -> Path:
        return self.data_dir / "mosquitto.db"

    def config_text(self) -> str:
        base: list[str] = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "persistence_file mosquitto.db",
            f"autosave_interval {self.autosave_interval}",
            "max_queued_messages 1000000",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            # As root mosquitto would drop to the 'mosquitto' user, which cannot write here.
            base.append("user root")
        extra = [line.strip() for line in self.extra_config if line.strip()]
        overridden = {line.split()[0] for line in extra if not line.startswith("#")}
        overridden.discard("listener")
        kept = [line for line in base if line.split()[0] not in overridden]
        hoisted = [line for line in extra if line.split()[0] == "per_listener_settings"]
        rest = [line for line in extra if line.split()[0] != "per_listener_settings"]
        return "\n".join(["# generated by tests/servers.py", *hoisted, *kept, *rest, ""])

    def _prepare(self) -> None:
        self.config_path.write_text(self.config_text())

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def _probe(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                pass
        except OSError:
            return False
        return mqtt_handshake(self.host, self.port) is not None

    def wait_until_persisted(self, needle: bytes, timeout: float = 10.0) -> None:
        """Poll until ``mosquitto.db`` contains ``needle`` (e.g. a retained payload).

        Lets a test make sure a message is on disk before ``kill()``; graceful ``stop()``
        always saves, so this is only needed around SIGKILL.
        """
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                if needle in self.persistence_path.read_bytes():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{needle!r} not in {self.persistence_path} after {timeout:g}s "
                    f"(autosave_interval {self.autosave_interval})"
                )
            time.sleep(POLL_INTERVAL)


# ---------------------------------------------------------------------------------------------
# HTTP servers


class _HttpServer(Server):
    """A server spoken to over HTTP, with a lazily created httpx client per run."""

    _http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        """An httpx client bound to ``url`` (closed on stop; trust_env off: no proxies)."""
        if not self.is_running:
            raise ServerError(f"{self.name} is not running")
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, timeout=30.0, trust_env=False)
        return self._http

    def _on_stopped(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _get_status(self, path: str) -> int | None:
        try:
            response = httpx.get(f"{self.url}{path}", timeout=1.0, trust_env=False)
        except httpx.HTTPError:
            return None
        return response.status_code


def _lines_body(lines: str | bytes | Iterable[str]) -> bytes:
    if isinstance(lines, bytes):
        return lines
    if isinstance(lines, str):
        return lines.encode()
    return "\n".join(lines).encode()


# ---------------------------------------------------------------------------------------------
# InfluxDB 1.x


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    raise TypeError(f"cannot render {value!r} as TOML")


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _render_toml(config: Mapping[str, Any]) -> str:
    out = ["# generated by tests/servers.py"]
    out += [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, Mapping)]
    for section, values in config.items():
        if isinstance(values, Mapping):
            out.append(f"\n[{section}]")
            out += [f"  {k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(out) + "\n"


class InfluxDB1Server(_HttpServer):
    """``influxd`` 1.x with meta/data/wal under the data dir, quiet and loopback-only.

    Both the HTTP API (``port``) and the RPC/backup service (``rpc_port``, default 8088) get
    free loopback ports. Usage reporting, the ``_internal`` monitor database, continuous
    queries and subscriptions are off; the WAL is fsynced on every write, so acknowledged
    writes survive ``kill()``. ``settings`` is deep-merged into the generated config, e.g.
    ``{"http": {"auth-enabled": True}}``.
    """

    name = "influxdb"
    binary_name = "influxd"
    binary_env_var = "INFLUXD_BIN"
    extra_port_count = 1

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        settings: Mapping[str, Any] | None = None,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(data_dir, **options)
        self.settings: Mapping[str, Any] = settings or {}

    @property
    def rpc_port(self) -> int:
        return self._extra_ports[0]

    @property
    def config_path(self) -> Path:
        return self.data_dir / "influxdb.conf"

    def config(self) -> dict[str, Any]:
        d = self.data_dir
        base: dict[str, Any] = {
            "reporting-disabled": True,  # upstream key
            "reporting-enabled": False,  # Debian's patched build uses this one instead
            "bind-address": f"{self.host}:{self.rpc_port}",
            "meta": {"dir": str(d / "meta"), "logging-enabled": False},
            "data": {
                "dir": str(d / "data"),
                "wal-dir": str(d / "wal"),
                "wal-fsync-delay": "0s",
                "query-log-enabled": False,
            },
            "monitor": {"store-enabled": False},
            "continuous_queries": {"enabled": False},
            "subscriber": {"enabled": False},
            "http": {
                "enabled": True,
                "bind-address": f"{self.host}:{self.port}",
                "log-enabled": False,
                "pprof-enabled": False,
            },
            "logging": {"level": "warn", "suppress-logo": True},
        }
        return _deep_merge(base, self.settings)

    def _prepare(self) -> None:
        self.config_path.write_text(_render_toml(self.config()))

    def _env(self) -> dict[str, str]:
        # INFLUXDB_* variables override the config file: keep the run hermetic.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def _command(self) -> list[str]:
        return [self.binary, "-config", str(self.config_path)]

    def _probe(self) -> bool:
        return self._get_status("/ping") == 204

    # -- API helpers -----------------------------------------------------------------------

    def query_raw(
        self, q: str, db: str | None = None, *, epoch: str | None = "ms"
    ) -> dict[str, Any]:
        """POST /query; the decoded JSON. Raises InfluxQueryError on any error."""
        params: dict[str, str] = {"q": q}
        if db is not None:
            params["db"] = db
        if epoch is not None:
            params["epoch"] = epoch
        response = self.http.post("/query", data=params)
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {"error": response.text}
        if response.status_code != 200 or "error" in body:
            raise InfluxQueryError(f"{q!r}: HTTP {response.status_code}: {body}")
        for result in body.get("results", []):
            if "error" in result:
                raise InfluxQueryError(f"{q!r}: {result['error']}")
        return body

    def query(
        self, q: str, db: str | None = None, *, epoch: str | None = "ms"
    ) -> list[dict[str, Any]]:
        """Run ``q`` and return its rows as ``{column: value}`` dicts, series by series.

        Times are integer epoch milliseconds by default (``epoch=None`` gives RFC3339
        strings). With ``GROUP BY`` the series' tags are merged into each row. Rows of all
        statements and series are concatenated; use ``query_raw`` to tell them apart.
        """
        rows: list[dict[str, Any]] = []
        for result in self.query_raw(q, db, epoch=epoch).get("results", []):
            for series in result.get("series", []):
                tags = series.get("tags") or {}
                columns = series["columns"]
                for values in series.get("values", []):
                    rows.append({**tags, **dict(zip(columns, values, strict=True))})
        return rows

    def create_database(self, name: str) -> None:
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        self.query_raw(f'CREATE DATABASE "{escaped}"')

    def write(
        self,
        lines: str | bytes | Iterable[str],
        db: str,
        *,
        precision: str = "ms",
        rp: str | None = None,
    ) -> None:
        """POST /write?db=...&precision=... line protocol; raises unless 204."""
        params = {"db": db, "precision": precision}
        if rp is not None:
            params["rp"] = rp
        response = self.http.post("/write", params=params, content=_lines_body(lines))
        if response.status_code != 204:
            raise InfluxQueryError(f"write to {db}: HTTP {response.status_code}: {response.text}")


# ---------------------------------------------------------------------------------------------
# VictoriaMetrics


class VmSample(NamedTuple):
    """One stored sample: metric name, labels (without ``__name__``), ms timestamp, value."""

    metric: str
    labels: dict[str, str]
    timestamp: int
    value: float


VM_ALL = '{__name__=~".+"}'


class VictoriaMetricsServer(_HttpServer):
    """Single-node ``victoria-metrics`` (tested with 1.79) storing into ``<data_dir>/storage``.

    Runs with ``-retentionPeriod=100y -search.latencyOffset=0s -search.disableCache``; add
    flags with ``extra_args``. No self-scraping, so the only series are the ones you wrote.

    How InfluxDB line protocol lands in VictoriaMetrics 1.79 (checked against this binary;
    the same for ``/write`` and ``/api/v2/write``):

    * ``m,tag1=a,tag2=b f1=1.5,f2=3i,f3=true,f4="txt" TS`` becomes one series per field,
      named ``{measurement}_{field}`` with the tags as labels: ``m_f1{tag1="a",tag2="b"}`` =
      1.5, ``m_f2{...}`` = 3, ``m_f3{...}`` = 1 (``false`` -> 0), and ``m_f4{...}`` = **0**:
      string fields are stored as the number 0, not dropped. This happens even for a single
      field (``-influxSkipSingleField`` is off): ``m value=1`` -> ``m_value``. Escaped spaces
      and commas stay in names: ``esc\\ m,k=a\\ b x\\,y=1`` -> ``esc m_x,y{k="a b"}``.
    * Timestamps are stored in milliseconds. ``precision`` may be ``ns`` (the default when
      absent), ``us``, ``ms`` or ``s``; finer ones are truncated to the millisecond
      (``-influxTrimTimestamp=1ms``). A line without timestamp gets the server's clock,
      and so does a timestamp of exactly ``0``.
    * ``?db=NAME`` (accepted by both endpoints) adds a label ``db="NAME"`` unless the line
      has a ``db`` tag of its own; ``/api/v2/write``'s ``bucket`` and ``org`` add nothing.
    * Writing the same series and timestamp twice keeps **both** samples (no deduplication
      without ``-dedup.minScrapeInterval``); InfluxDB would keep only the last one.
    * Not stored, yet the write still answers 204: unparsable lines (logged as errors and
      skipped, the rest of the batch is kept), timestamps more than 2 days ahead of the
      server clock (logged as a warning), negative timestamps (silently).
    * Visibility: ``/api/v1/export`` without an explicit ``end`` stops at "now", so fresh
      points can be missed, and ``/api/v1/series`` treats ``start=0`` as unset (last few
      minutes only); without ``/internal/force_flush`` a point near the current time took
      up to ~10 s to show up (older timestamps ~1 s). ``export()``/``samples()``/
      ``series()`` here flush first and pass an explicit all-time range, after which every
      acknowledged write is visible at once.
    * Durability: a force-flush does not reach the disk. Samples written less than ~5 s
      before a SIGKILL are lost (their series remain in the index, sample-less). Graceful
      ``stop()`` keeps everything; ``persist()`` (snapshot create + delete) before
      ``kill()`` does too.
    """

    name = "victoria-metrics"
    binary_name = "victoria-metrics"
    binary_env_var = "VICTORIA_METRICS_BIN"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        extra_args: Sequence[str] = (),
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(data_dir, **options)
        self.extra_args = list(extra_args)

    @property
    def storage_path(self) -> Path:
        return self.data_dir / "storage"

    def _command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.storage_path}",
            f"-httpListenAddr={self.host}:{self.port}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            *self.extra_args,
        ]

    def _probe(self) -> bool:
        return self._get_status("/health") == 200

    # -- API helpers -----------------------------------------------------------------------

    def write(
        self,
        lines: str | bytes | Iterable[str],
        *,
        precision: str = "ms",
        endpoint: str = "/api/v2/write",
        db: str | None = None,
    ) -> None:
        """POST line protocol to ``endpoint`` (``/api/v2/write`` or ``/write``); expects 204."""
        params = {"precision": precision}
        if db is not None:
            params["db"] = db
        response = self.http.post(endpoint, params=params, content=_lines_body(lines))
        if response.status_code != 204:
            raise ServerError(f"VM write: HTTP {response.status_code}: {response.text}")

    def flush(self) -> None:
        """``/internal/force_flush``: make everything acknowledged so far searchable now."""
        response = self.http.get("/internal/force_flush")
        response.raise_for_status()

    def persist(self) -> None:
        """Get everything acknowledged so far onto disk, so it survives ``kill()``.

        ``flush()`` only makes data searchable: VM 1.79 keeps freshly written samples in
        memory parts for up to ~5 s, and a SIGKILL in that window loses them (while their
        series stay in the index, so they show up in ``series()`` without samples). A
        snapshot forces them to disk; it is deleted again right away (hard links only).
        """
        response = self.http.get("/snapshot/create")
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "ok":
            raise ServerError(f"VM snapshot failed: {body}")
        self.http.get("/snapshot/delete", params={"snapshot": body["snapshot"]}).raise_for_status()

    @staticmethod
    def _range() -> dict[str, str]:
        # start=0 would mean "unset" for some endpoints; VM refuses points > now+2d anyway.
        return {"start": "1", "end": str(int(time.time()) + 3 * 86400)}

    def export(
        self, match: str | Sequence[str] = VM_ALL, *, flush: bool = True
    ) -> list[dict[str, Any]]:
        """``/api/v1/export`` over all time: parsed JSON lines, one per series.

        Each is ``{"metric": {"__name__": ..., label: value}, "values": [...],
        "timestamps": [ms, ...]}``; series order is VM's (unspecified).
        """
        if flush:
            self.flush()
        matches = [match] if isinstance(match, str) else list(match)
        response = self.http.post(
            "/api/v1/export", data={"match[]": matches, "start": "0", "end": self._range()["end"]}
        )
        response.raise_for_status()
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    def samples(self, match: str | Sequence[str] = VM_ALL, *, flush: bool = True) -> list[VmSample]:
        """Every stored sample matching ``match``, sorted by (metric, labels, timestamp)."""
        out: list[VmSample] = []
        for series in self.export(match, flush=flush):
            labels = dict(series["metric"])
            metric = labels.pop("__name__", "")
            for ts, value in zip(series["timestamps"], series["values"], strict=True):
                out.append(VmSample(metric, labels, int(ts), float(value)))
        out.sort(key=lambda s: (s.metric, sorted(s.labels.items()), s.timestamp, s.value))
        return out

    def sample_count(self, match: str | Sequence[str] = VM_ALL) -> int:
        return len(self.samples(match))

    def series(
        self, match: str | Sequence[str] = VM_ALL, *, flush: bool = True
    ) -> list[dict[str, str]]:
        """Label sets (with ``__name__``) of the series matching ``match``, over all time."""
        if flush:
            self.flush()
        matches = [match] if isinstance(match, str) else list(match)
        response = self.http.post("/api/v1/series", data={"match[]": matches, **self._range()})
        response.raise_for_status()
        data: list[dict[str, str]] = response.json()["data"]
        return sorted(data, key=lambda labels: sorted(labels.items()))

    def series_count(self, match: str | Sequence[str] = VM_ALL) -> int:
        return len(self.series(match))


# ---------------------------------------------------------------------------------------------
# Our own services, started as subprocesses by tests, benchmarks and evaluations


def wait_alerts_ready(port: int, timeout: float = 30) -> None:
    """Return once facility-alerts on ``port`` has restored its state and judges telemetry."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"http://{LOOPBACK}:{port}/healthz", timeout=2)
            if response.json().get("state_restored"):
                return
        except (httpx.HTTPError, ValueError):
            pass  # not listening yet, or not answering JSON yet
        time.sleep(0.2)
    raise RuntimeError("facility-alerts did not become ready")


# ---------------------------------------------------------------------------------------------
# CLI

SERVER_CLASSES: dict[str, type[Server]] = {
    "mosquitto": MosquittoServer,
    "influxdb": InfluxDB1Server,
    "victoria-metrics": VictoriaMetricsServer,
}


def _iter_selected(which: str) -> Iterator[type[Server]]:
    if which == "all":
        yield from SERVER_CLASSES.values()
    else:
        yield SERVER_CLASSES[which]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers",
        description="Run real test servers in the foreground on loopback until Ctrl-C.",
    )
    parser.add_argument("which", choices=[*SERVER_CLASSES, "all"])
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep data under DIR/<server> (default: temporary dirs, deleted on exit)",
    )
    parser.add_argument("--port", type=int, help="fixed port (only with a single server)")
    args = parser.parse_args(argv)
    if args.port is not None and args.which == "all":
        parser.error("--port needs a single server")

    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    # Explicit SIGINT handler too: a shell's background job inherits SIGINT as ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    servers: list[Server] = []
    try:
        for cls in _iter_selected(args.which):
            data_dir = args.data_dir / cls.name if args.data_dir else None
            server = cls(data_dir, port=args.port)
            servers.append(server)
            server.start()
            print(f"{cls.name:17} {server.url}   log: {server.log_path}", flush=True)
        print("Ctrl-C to stop.", flush=True)
        while not stop.is_set():
            dead = [s for s in servers if not s.is_running]
            if dead:
                for server in dead:
                    print(f"{server.name} exited; log tail:\n{server.log_tail()}", file=sys.stderr)
                return 1
            stop.wait(0.5)
    except ServerError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        for server in reversed(servers):
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
