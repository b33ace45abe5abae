"""Helpers for ingest tests: run facility-ingest as a real subprocess, publish known readings,
read back what the database stored."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import bound_port, wait_until
from tests.servers import InfluxDB1Server, InfluxQueryError, MosquittoServer

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "facility"
BINS = ("bin-001", "bin-002", "bin-003", "bin-004")
# Well in the past (so never "in the future") and unique per reading: one ms apart.
BASE_TS_MS = int(time.time() * 1000) - 6 * 3600 * 1000


def reading(i: int, base_ms: int = BASE_TS_MS) -> tuple[str, bytes, int]:
    """Reading number ``i``: (topic, payload, ts_ms); each has its own timestamp."""
    device = BINS[i % len(BINS)]
    ts = base_ms + i
    payload = {"ts": ts, "weight_kg": round(i % 997 * 0.1, 1), "fill_pct": i % 100, "seq": i}
    return f"{PREFIX}/ewaste/ewaste_bin/{device}/telemetry", json.dumps(payload).encode(), ts


def readings(count: int, start: int = 0) -> list[tuple[str, bytes, int]]:
    return [reading(i) for i in range(start, start + count)]


class IngestProcess:
    """``python -m services.ingest`` with the given environment; SIGKILL is real.

    It binds any free port for /healthz and reports it (``http_port``, new at every start).
    Another service run the same way (facility-bridge) subclasses it with its own ``module``
    and port variable."""

    module: ClassVar[str] = "services.ingest"
    http_port_variable: ClassVar[str] = "INGEST_HTTP_PORT"

    def __init__(self, tmp_path: Path, env: Mapping[str, str], name: str = "ingest") -> None:
        self.http_port = 0
        self.port_file = tmp_path / f"{name}.port"
        self.log_path = tmp_path / f"{name}.log"
        self.env = {
            **os.environ,
            "INGEST_SPOOL_DIR": str(tmp_path / f"{name}-spool"),
            "INGEST_FLUSH_INTERVAL_MS": "100",
            "INGEST_BATCH_SIZE": "500",
            "INGEST_RETRY_BASE_MS": "50",
            "INGEST_RETRY_MAX_MS": "500",
            "INGEST_WRITE_TIMEOUT_MS": "3000",
            "LOG_FORMAT": "console",
            "SECRETS_DIR": str(tmp_path / "no-secrets"),
            **env,
            self.http_port_variable: "0",
            "HTTP_PORT_FILE": str(self.port_file),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.port_file.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            self.http_port = bound_port(self.port_file, self.proc)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log_tail()}") from None
        wait_until(self._answers, timeout=30)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.module} exited {self.proc.returncode}:\n{self.log_tail()}")
        try:
            httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2)
        except httpx.HTTPError:
            return False
        return True

    def health(self) -> tuple[int, dict[str, Any]]:
        response = httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=5)
        return response.status_code, response.json()

    def metrics(self) -> dict[str, float]:
        """Prometheus samples by full name with labels, e.g. ``ingest_points_spooled_total``."""
        text = httpx.get(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)

    def wait_connected(self) -> None:
        wait_until(lambda: self.health()[1]["mqtt"]["connected"], timeout=30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def command(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``facility-ingest <args>`` (e.g. ``deadletters list``) with this ingest's settings,
        ``env`` overriding some; runs to its end."""
        return subprocess.run(
            [sys.executable, "-m", "services.ingest", *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def stored_dead_letters(self, **env: str) -> list[dict[str, Any]]:
        """What ``facility-ingest deadletters list --json`` shows, one dict per letter."""
        done = self.command("deadletters", "list", "--json", **env)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Publisher:
    """A QoS 1 publisher that can pace itself in a background thread and reports progress."""

    def __init__(self, host: str, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.sent = 0
        self._infos: list[mqtt.MQTTMessageInfo] = []
        self._thread: threading.Thread | None = None

    def publish_all(self, messages: Iterable[tuple[str, bytes, int]], rate: float = 0) -> None:
        """Publish in order; ``rate`` messages/second (0 = as fast as possible)."""
        started = time.monotonic()
        for topic, payload, _ in messages:
            self._infos.append(self.client.publish(topic, payload, qos=1))
            self.sent += 1
            if rate and self.sent % 50 == 0:
                ahead = started + self.sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing, not synchronisation

    def publish_in_background(
        self, messages: list[tuple[str, bytes, int]], rate: float
    ) -> Publisher:
        self._thread = threading.Thread(target=self.publish_all, args=(messages, rate))
        self._thread.start()
        return self

    def wait_acknowledged(self, timeout: float = 60) -> None:
        """Every message accepted by the broker (PUBACK), so it is the broker's to keep."""
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for info in self._infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not acknowledge a publish"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def v1_env(broker: MosquittoServer, influx: InfluxDB1Server, **extra: str) -> dict[str, str]:
    """facility-ingest's settings for ``broker`` and an InfluxDB 1.x (API v1)."""
    return {"MQTT_URL": broker.url, "INFLUX_URL": influx.url, "INFLUX_API_VERSION": "1", **extra}


def publish_acknowledged(
    broker: MosquittoServer,
    messages: list[tuple[str, bytes, int]],
    rate: float = 0,
    client_id: str = "test-publisher",
) -> None:
    """Publishes ``messages`` in order (``rate`` as ``Publisher.publish_all``) and returns once
    the broker has acknowledged every one."""
    publisher = Publisher(broker.host, broker.port, client_id)
    publisher.publish_all(messages, rate)
    publisher.wait_acknowledged()
    publisher.close()


def stored_timestamps(influx: InfluxDB1Server, db: str = "facility") -> list[int]:
    """Timestamps of every stored ewaste_bin point (all series), with repeats if any."""
    try:
        rows = influx.query("SELECT weight_kg FROM ewaste_bin", db=db)
    except (InfluxQueryError, httpx.HTTPError):
        return []
    return [int(row["time"]) for row in rows]


def stored_count(influx: InfluxDB1Server, db: str = "facility") -> int:
    try:
        rows = influx.query("SELECT count(weight_kg) FROM ewaste_bin", db=db)
    except (InfluxQueryError, httpx.HTTPError):
        return 0
    return int(rows[0]["count"]) if rows else 0


def wait_stored(
    influx: InfluxDB1Server, count: int, ingest: IngestProcess, timeout: float = 90
) -> None:
    try:
        wait_until(lambda: stored_count(influx) >= count, timeout=timeout, interval=0.25)
    except TimeoutError:
        raise AssertionError(
            f"{stored_count(influx)} of {count} stored; ingest log:\n{ingest.log_tail()}"
        ) from None


def assert_exactly_stored(influx: InfluxDB1Server, expected: list[tuple[str, bytes, int]]) -> None:
    stored = stored_timestamps(influx)
    want = sorted(ts for _, _, ts in expected)
    assert len(stored) == len(set(stored)), "a timestamp is stored twice in one series"
    missing = sorted(set(want) - set(stored))
    extra = sorted(set(stored) - set(want))
    assert not missing and not extra, f"missing {missing[:10]} ({len(missing)}), extra {extra[:10]}"
    assert len(stored) == len(want)


def wait_exactly_stored(
    influx: InfluxDB1Server, expected: list[tuple[str, bytes, int]], ingest: IngestProcess
) -> None:
    """The fault tests' verdict: every expected reading arrives, and nothing else."""
    wait_stored(influx, len(expected), ingest)
    assert_exactly_stored(influx, expected)


def labelled(name: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def log_mentions(ingest: IngestProcess, pattern: str) -> bool:
    try:
        return re.search(pattern, ingest.log_path.read_text(errors="replace")) is not None
    except OSError:
        return False


IngestFactory = Callable[..., IngestProcess]


def ingest_processes(tmp_path: Path) -> Iterator[IngestFactory]:
    """Body of the ``ingest_factory`` fixtures: ``make(env, name="ingest")`` -> an
    IngestProcess (not started); each is killed at teardown if still running."""
    made: list[IngestProcess] = []

    def make(env: dict[str, str], name: str = "ingest") -> IngestProcess:
        process = IngestProcess(tmp_path, env, name)
        made.append(process)
        return process

    yield make
    for process in made:
        process.stop()
