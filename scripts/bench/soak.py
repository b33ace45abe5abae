"""Soak benchmark (issue 12): the stress scenario at 2,000 msg/s for 30 minutes while a seeded
schedule injects a fault every 20-60 s, then a drain and an exact published-vs-stored check.

Real processes on free loopback ports: Mosquitto (persistence on), InfluxDB 1.x, facility-ingest
and facility-alerts (shipped ``config/rules.yaml``, webhook to a loopback receiver). The
publisher is the simulator's own engine running the ``stress`` scenario (its seed, its
malformed / out-of-range / duplicate faults) paced to ``--rate``, plus scripted bins whose fill
crosses 90 % and is emptied again, so ``bin_full`` must fire and resolve for each. Every message
is judged with ``common.payloads.parse_message`` as it is published, which gives the exact
expected counts: unique (device, ts) readings per measurement and dead letters by reason.

Faults (one at a time, next one 20-60 s after the previous recovery): SIGKILL ingest, SIGKILL
alerts, restart the broker, SIGKILL the broker, stop the database 5-60 s, fill the spool disk
(a tmpfs) while the database is down, black-hole the database (SIGSTOP: the kernel accepts
connections and requests, nothing answers).

``make bench BENCH=soak`` or ``python -m scripts.bench soak --minutes 30 --seed 1``; short
runs for development: ``--minutes 3``. Exits non-zero when published != stored.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from common.devices import load_registry
from common.payloads import Reading, Rejection, StatusReading, parse_message
from common.topics import Topics
from devices.simulator.clock import NoWait
from devices.simulator.engine import Engine, Outgoing, select_devices
from devices.simulator.scenario import load_scenario
from tests.helpers import MessageCollector, bound_port, publish, wait_until
from tests.integration.alerts.support import AlertsRun, WebhookReceiver, alerts_run
from tests.integration.ingest_support import IngestProcess
from tests.servers import InfluxDB1Server, MosquittoServer, wait_alerts_ready

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "facility"
DB = "facility"
FAULTS = (
    "ingest_sigkill",
    "alerts_sigkill",
    "broker_restart",
    "broker_sigkill",
    "db_stop",
    "spool_disk_full",
    "db_blackhole",
)
SCRIPTED_INTERVAL_MS = 10_000
RAMP_MS, HOLD_MS = 2 * 60_000, 6 * 60_000  # bin_full needs >= 90 for 2 min of event time
MAX_OUTSTANDING = 30_000  # paho's packet ids are 16-bit: stay well below 65535 unacknowledged
SPOOL_DISK_BYTES = 256 * 2**20


# -- the schedule -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float  # seconds after publishing began
    kind: str
    duration_s: float  # how long the service stays down / the condition lasts


def fault_schedule(seed: int, seconds: float, kinds: tuple[str, ...] = FAULTS) -> list[Fault]:
    """Faults one after another, each 20-60 s after the previous one's planned end."""
    rng = random.Random(f"soak-faults-{seed}")
    out: list[Fault] = []
    t = rng.uniform(20, 60)
    while t < seconds - 15:
        kind = rng.choice(kinds)
        duration = {
            "ingest_sigkill": rng.uniform(1, 10),
            "alerts_sigkill": rng.uniform(1, 10),
            "broker_restart": 0.0,
            "broker_sigkill": rng.uniform(1, 5),
            "db_stop": rng.uniform(5, 60),
            "spool_disk_full": rng.uniform(5, 30),
            "db_blackhole": rng.uniform(5, 60),
        }[kind]
        out.append(Fault(round(t, 1), kind, round(duration, 1)))
        t += duration + rng.uniform(20, 60)
    return out


@dataclass(frozen=True, slots=True)
class Episode:
    """A scripted bin: 20 % full, fills to 95 % over RAMP_MS from ``start_ms``, stays there
    HOLD_MS, then is emptied to 10 %."""

    device_id: str
    start_ms: int

    def fill(self, ts: int) -> float:
        if ts < self.start_ms:
            return 20.0
        if ts < self.start_ms + RAMP_MS:
            return round(20 + 75 * (ts - self.start_ms) / RAMP_MS, 1)
        if ts < self.start_ms + RAMP_MS + HOLD_MS:
            return 95.0
        return 10.0


def scripted_episodes(seed: int, start_ms: int, end_ms: int, count: int) -> list[Episode]:
    rng = random.Random(f"soak-bins-{seed}")
    span = end_ms - start_ms
    latest = span - RAMP_MS - HOLD_MS - 5 * 60_000  # resolved well before the window ends
    return [
        Episode(f"soak-fill-{i + 1:03d}", start_ms + int(rng.uniform(0.05 * span, latest)))
        for i in range(count)
    ]


def scripted_readings(
    episodes: list[Episode], start_ms: int, end_ms: int
) -> list[tuple[int, Outgoing]]:
    """(ts, message): every scripted bin reports every 10 s of the window; sorted by ts."""
    out: list[tuple[int, Outgoing]] = []
    for n, ep in enumerate(episodes):
        topic = f"{PREFIX}/ewaste/ewaste_bin/{ep.device_id}/telemetry"
        for ts in range(start_ms + 37 * n % SCRIPTED_INTERVAL_MS, end_ms, SCRIPTED_INTERVAL_MS):
            fill = ep.fill(ts)
            body = {"ts": ts, "fill_pct": fill, "weight_kg": round(fill * 2, 1)}
            out.append((ts, Outgoing(ep.device_id, topic, json.dumps(body).encode())))
    out.sort(key=lambda pair: pair[0])
    return out


# -- the publisher ------------------------------------------------------------------------------
@dataclass(slots=True)
class Expected:
    """What was published, judged as the receivers judge it."""

    messages: int = 0
    readings: Counter[str] = field(default_factory=Counter)  # unique (device, ts) per measurement
    per_device: Counter[tuple[str, str]] = field(default_factory=Counter)
    repeats: int = 0  # the same (device, ts) published again (the scenario's duplicate fault)
    out_of_order: int = 0
    statuses: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    last_ts: dict[tuple[str, str], int] = field(default_factory=dict)

    def judge(self, topic: str, payload: bytes, topics: Topics) -> None:
        self.messages += 1
        result = parse_message(topic, payload, topics)
        if isinstance(result, Rejection):
            self.rejections[result.code] += 1
        elif isinstance(result, StatusReading):
            self.statuses += 1
        elif isinstance(result, Reading):
            key = (result.measurement, result.device_id)
            last = self.last_ts.get(key)
            if last is not None and result.ts_ms == last:
                self.repeats += 1
            elif last is not None and result.ts_ms < last:
                self.out_of_order += 1  # cannot be told from a repeat without every key kept
            else:
                self.last_ts[key] = result.ts_ms
                self.readings[result.measurement] += 1
                self.per_device[key] += 1


class SoakPublisher:
    """The engine's ``Publisher``: paces messages to ``rate``/s over one QoS 1 paho connection
    (persistent session, so unacknowledged messages are resent after a broker restart) and
    slips in the scripted bins' readings in event-time order."""

    def __init__(
        self, broker: MosquittoServer, rate: float, scripted: list[tuple[int, Outgoing]]
    ) -> None:
        self.rate = rate
        self.topics = Topics(PREFIX)
        self.expected = Expected()
        self.scripted = scripted
        self._next_scripted = 0
        self.engine: Engine | None = None
        self.acked = 0
        self.sent = 0
        self.started = 0.0
        self.finished = 0.0
        # (seconds since start, messages sent, event time), every 2,000 messages
        self.clock: list[tuple[float, int, int]] = []
        self.stop = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="soak-publisher",
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()

    def _on_publish(self, *_args: object) -> None:
        self.acked += 1  # paho's network thread only

    def publish(self, message: Outgoing) -> None:
        now_ms = self.engine.now_ms if self.engine is not None else 0
        while (
            self._next_scripted < len(self.scripted)
            and self.scripted[self._next_scripted][0] <= now_ms
        ):
            self._send(self.scripted[self._next_scripted][1])
            self._next_scripted += 1
        self._send(message)

    def _send(self, message: Outgoing) -> None:
        if self.stop.is_set():
            raise _Stopped
        if not self.started:
            self.started = time.monotonic()
        ahead = self.started + self.sent / self.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)  # pacing
        while self.sent - self.acked > MAX_OUTSTANDING and not self.stop.is_set():
            time.sleep(0.01)  # broker away: hold back rather than reuse a packet id
        while True:
            info = self.client.publish(message.topic, message.payload, qos=1, retain=message.retain)
            if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                break
            time.sleep(0.01)
        self.sent += 1
        if self.sent % 2000 == 0 and self.engine is not None:
            self.clock.append((time.monotonic() - self.started, self.sent, self.engine.now_ms))
        self.expected.judge(message.topic, message.payload, self.topics)

    def finish_scripted(self) -> None:
        for _, message in self.scripted[self._next_scripted :]:
            self._send(message)
        self._next_scripted = len(self.scripted)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _Stopped(Exception):
    """The run was interrupted."""


class DurableCollector(MessageCollector):
    """A ``MessageCollector`` on a persistent session (fixed id, no clean session): what the
    broker queues for it while it reconnects after a broker restart still reaches it."""

    def __init__(self, url: str, topic_filter: str, client_id: str) -> None:
        super().__init__(url, topic_filter, client_id=client_id)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message


# -- the services -------------------------------------------------------------------------------
class RssWatch:
    """Peak resident memory (VmHWM) of each service, as a maximum over its restarts."""

    def __init__(self) -> None:
        self.pids: dict[str, Callable[[], int | None]] = {}
        self.peak_kb: Counter[str] = Counter()
        self.peak_load = 0.0  # the machine's 1-minute load average: it is shared

    def sample(self) -> None:
        self.peak_load = max(self.peak_load, os.getloadavg()[0])
        for name, pid_of in self.pids.items():
            pid = pid_of()
            if pid is None:
                continue
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb[name] = max(self.peak_kb[name], int(line.split()[1]))


@dataclass(slots=True)
class Alerts:
    run: AlertsRun
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self) -> None:
        self.run.port_file.unlink(missing_ok=True)
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

        def to_log() -> None:
            os.dup2(fd, 1)
            os.dup2(fd, 2)

        try:
            self.proc = self.run.start(preexec_fn=to_log)
        finally:
            os.close(fd)
        self.port = bound_port(self.run.port_file, self.proc)
        wait_alerts_ready(self.port, timeout=120)

    def kill(self) -> None:
        if self.proc is not None:
            AlertsRun.stop(self.proc, signal.SIGKILL)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    out[name] = float(value)
        return out


@dataclass(slots=True)
class Stack:
    broker: MosquittoServer
    influx: InfluxDB1Server
    ingest: IngestProcess
    alerts: Alerts
    spool_disk: Path
    rss: RssWatch
    log: list[str] = field(default_factory=list)

    def note(self, started: float, text: str) -> None:
        line = f"  [{time.monotonic() - started:7.1f} s] {text}"
        self.log.append(line)
        print(line, flush=True)


@contextlib.contextmanager
def spool_disk(workdir: Path) -> Iterator[tuple[Path, bool]]:
    """A small tmpfs for the spool (as the disk-full test mounts one); a plain directory when
    not root, and then the disk-full fault is left out."""
    disk = workdir / "spool-disk"
    disk.mkdir()
    mounted = False
    if os.geteuid() == 0:
        size = f"size={SPOOL_DISK_BYTES}"
        mounted = (
            subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(disk)]).returncode == 0
        )
    try:
        yield disk, mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def _pause(stack: Stack, seconds: float) -> None:
    """Wait ``seconds`` while sampling memory (the schedule's own timing, not a sync)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        stack.rss.sample()
        time.sleep(min(1.0, left))


def inject(stack: Stack, fault: Fault, started: float) -> None:
    kind, hold = fault.kind, fault.duration_s
    stack.rss.sample()
    if kind == "ingest_sigkill":
        stack.ingest.kill()
        stack.note(started, f"SIGKILL ingest, restart after {hold:.1f} s")
        _pause(stack, hold)
        stack.ingest.start()
    elif kind == "alerts_sigkill":
        stack.alerts.kill()
        stack.note(started, f"SIGKILL alerts, restart after {hold:.1f} s")
        _pause(stack, hold)
        stack.alerts.start()
    elif kind == "broker_restart":
        stack.note(started, "restart the broker (SIGTERM, start)")
        stack.broker.restart()
    elif kind == "broker_sigkill":
        stack.note(started, f"SIGKILL the broker, start after {hold:.1f} s")
        stack.broker.kill()
        _pause(stack, hold)
        stack.broker.start()
    elif kind == "db_stop":
        stack.note(started, f"stop the database for {hold:.1f} s")
        stack.influx.stop()
        _pause(stack, hold)
        stack.influx.start()
    elif kind == "spool_disk_full":
        filler = stack.spool_disk / "filler"
        stats = os.statvfs(stack.spool_disk)
        free = stats.f_bavail * stats.f_frsize
        with filler.open("wb") as out:
            out.truncate(0)
            chunk = b"\0" * 2**20
            left = max(0, free - 256 * 1024)
            while left > 0:
                out.write(chunk[: min(len(chunk), left)])
                left -= len(chunk)
        stack.note(
            started, f"spool disk full ({free // 1024} KiB taken), database down {hold:.1f} s"
        )
        stack.influx.stop()
        _pause(stack, hold)
        stack.influx.start()
        _pause(stack, 5)
        filler.unlink()
        stack.note(started, "spool disk freed")
    elif kind == "db_blackhole":
        stack.note(started, f"black-hole the database (SIGSTOP) for {hold:.1f} s")
        pid = stack.influx.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            _pause(stack, hold)
        finally:
            os.kill(pid, signal.SIGCONT)
    stack.note(started, f"{kind} over")


# -- reading the results ------------------------------------------------------------------------
def stored_per_device(influx: InfluxDB1Server) -> Counter[tuple[str, str]]:
    """Stored points per (measurement, device_id): the largest per-field count of each series."""
    out: Counter[tuple[str, str]] = Counter()
    for measurement in ("ewaste_bin", "visitors", "energy"):
        for row in influx.query(f"SELECT count(*) FROM {measurement} GROUP BY device_id", db=DB):
            counts = [v for k, v in row.items() if k.startswith("count_") and v is not None]
            out[(measurement, row["device_id"])] = int(max(counts, default=0))
    return out


def retained_alerts(broker: MosquittoServer) -> list[dict[str, Any]]:
    """The alerts still active at the end (their retained records); a marker published after
    subscribing proves every retained message has arrived."""
    marker = f"{PREFIX}/soak/marker"
    with MessageCollector(broker.url, [f"{PREFIX}/alerts/active/#", marker]) as collector:
        publish(broker.url, marker, b"end")
        wait_until(lambda: any(m.topic == marker for m in collector.received), timeout=30)
        return [
            json.loads(m.payload)
            for m in collector.received
            if m.topic != marker and m.payload and m.retain
        ]


def _webhook_figures(receiver: WebhookReceiver, devices: set[str]) -> dict[str, Any]:
    keys: Counter[str] = Counter()
    events: dict[str, dict[str, Any]] = {}
    for headers, body in list(receiver.requests):
        key = {k.lower(): v for k, v in headers.items()}.get("idempotency-key", "")
        keys[key] += 1
        with contextlib.suppress(ValueError):
            events[key] = json.loads(body)
    scripted = Counter(
        e.get("state", "?")
        for e in events.values()
        if e.get("rule") == "bin_full" and e.get("device_id") in devices
    )
    return {
        "posts": sum(keys.values()),
        "unique": len(keys),
        "duplicated": sum(n - 1 for n in keys.values()),
        "by_rule": dict(Counter(f"{e.get('rule')}/{e.get('state')}" for e in events.values())),
        "scripted_firing": scripted["firing"],
        "scripted_resolved": scripted["resolved"],
    }


def _alert_points(influx: InfluxDB1Server, devices: set[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    with contextlib.suppress(Exception):
        rows = influx.query("SELECT state, device_id FROM alert WHERE rule = 'bin_full'", db=DB)
        for row in rows:
            if row.get("device_id") in devices:
                out[str(row.get("state"))] += 1
    return out


# -- the run ------------------------------------------------------------------------------------
def interrupt_on_signals() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt, so the services are stopped and the tmpfs
    unmounted (a background job starts with SIGINT ignored)."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def run(
    minutes: float = 30, seed: int = 1, rate: float = 2000, workdir: Path | None = None
) -> dict[str, Any]:
    """The whole soak; ``workdir`` keeps the servers' data and the services' logs."""
    seconds = minutes * 60
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-soak-")))
        else:
            workdir.mkdir(parents=True, exist_ok=False)
        disk, mounted = stack.enter_context(spool_disk(workdir))
        return _run(workdir, disk, mounted, seconds, seed, rate)


def _run(
    workdir: Path, disk: Path, mounted: bool, seconds: float, seed: int, rate: float
) -> dict[str, Any]:
    kinds = FAULTS if mounted else tuple(k for k in FAULTS if k != "spool_disk_full")
    schedule = fault_schedule(seed, seconds, kinds)
    scenario = load_scenario("stress")
    registry = load_registry(ROOT / "config" / "devices.yaml")
    devices = select_devices(scenario, registry)
    n_scripted = max(3, int(seconds // 120))
    per_sim_s = sum(1 / d.interval_s for d in devices) + n_scripted / 10
    sim_ms = int(seconds * rate / per_sim_s * 1000)
    end_ms = (int(time.time() * 1000) - 60_000) // 1000 * 1000
    start_ms = end_ms - sim_ms
    episodes = scripted_episodes(seed, start_ms, end_ms, n_scripted)
    print(
        f"soak: seed {seed}, {seconds / 60:g} min at {rate:,.0f} msg/s, stress scenario "
        f"({len(devices)} devices) + {n_scripted} scripted bins, event time "
        f"{sim_ms / 3_600_000:.1f} h, {len(schedule)} faults planned",
        flush=True,
    )
    receiver = WebhookReceiver().start()
    with (
        MosquittoServer(workdir / "mosquitto", start_timeout=120) as broker,
        InfluxDB1Server(workdir / "influxdb", start_timeout=120) as influx,
    ):
        influx.create_database(DB)
        ingest = IngestProcess(
            workdir,
            {
                "MQTT_URL": broker.url,
                "MQTT_CLIENT_ID": "soak-ingest",
                "INFLUX_URL": influx.url,
                "INFLUX_API_VERSION": "1",
                "INGEST_SPOOL_DIR": str(disk / "spool"),
                "INGEST_SPOOL_MAX_BYTES": str(SPOOL_DISK_BYTES * 3 // 4),
                # The documented defaults, not the fast ones the tests use.
                "INGEST_FLUSH_INTERVAL_MS": "200",
                "INGEST_BATCH_SIZE": "5000",
                "INGEST_RETRY_BASE_MS": "200",
                "INGEST_RETRY_MAX_MS": "10000",
                "INGEST_WRITE_TIMEOUT_MS": "10000",
                "LOG_LEVEL": "WARNING",
            },
        )
        alerts = Alerts(
            alerts_run(
                workdir,
                broker.url,
                "soak-alerts",
                ALERTS_RULES_FILE=str(ROOT / "config" / "rules.yaml"),
                INFLUX_URL=influx.url,
                INFLUX_API_VERSION="1",
                ALERTS_WEBHOOK_URL=receiver.url,
                ALERTS_RETRY_MAX_S="5",
                LOG_LEVEL="WARNING",
            ),
            workdir / "alerts.log",
        )
        rss = RssWatch()
        rss.pids = {
            "mosquitto": lambda: broker.pid,
            "influxd": lambda: influx.pid,
            "facility-ingest": lambda: ingest.proc.pid if ingest.proc else None,
            "facility-alerts": lambda: alerts.proc.pid if alerts.proc else None,
        }
        stack = Stack(broker, influx, ingest, alerts, disk, rss)
        ingest.start().wait_connected()
        alerts.start()
        dead = DurableCollector(broker.url, f"{PREFIX}/deadletter/#", "soak-dead")
        events = DurableCollector(broker.url, f"{PREFIX}/alerts/+/+/+", "soak-events")
        dead.start()
        events.start()
        publisher = SoakPublisher(broker, rate, scripted_readings(episodes, start_ms, end_ms))
        engine = Engine(
            scenario, registry, publisher.topics, publisher,
            start_ms=start_ms, end_ms=end_ms, seed=seed,
        )  # fmt: skip
        publisher.engine = engine
        failure: list[BaseException] = []

        def publish_all() -> None:
            try:
                engine.run(NoWait(start_ms), publisher.stop)
                publisher.finish_scripted()
            except _Stopped:
                pass
            except BaseException as exc:
                failure.append(exc)
            publisher.finished = time.monotonic()

        thread = threading.Thread(target=publish_all, name="soak-publisher", daemon=True)
        began = time.monotonic()
        thread.start()
        injected: list[Fault] = []
        try:
            for fault in schedule:
                wait = began + fault.at_s - time.monotonic()
                _pause(stack, max(0.0, wait))
                if not thread.is_alive():
                    break
                inject(stack, fault, began)
                injected.append(fault)
            while thread.is_alive():
                _pause(stack, 1)
            if failure:
                raise failure[0]
            stack.note(began, f"published {publisher.sent:,}; draining")
            wait_until(lambda: publisher.acked >= publisher.sent, timeout=300, interval=0.5)
            expected = publisher.expected
            stored = _drain(stack, expected, began)
            _drain_alerts(stack, began)
            retained = retained_alerts(broker)
            rss.sample()
        finally:
            publisher.stop.set()
            thread.join(30)
            with contextlib.suppress(Exception):
                publisher.close()
            dead.stop()
            events.stop()
            if influx.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(influx.pid, signal.SIGCONT)
            ingest.stop()
            alerts.run.kill_all()
            receiver.stop()
        figures = _figures(
            expected, stored, publisher, dead, events, receiver, retained, influx, episodes,
            injected, rss, seed, seconds, rate,
        )  # fmt: skip
        figures["fault_log"] = stack.log
        if figures["missing"] or figures["duplicates_stored"]:
            try:
                figures["gaps"] = _gaps(
                    influx, stored, expected, publisher.clock, injected, devices
                )
            except Exception as exc:  # a diagnosis must not cost the figures
                figures["gaps"] = [f"could not look: {type(exc).__name__}: {exc}"]
    _print(figures)
    return figures


def _stored_total(influx: InfluxDB1Server) -> Counter[tuple[str, str]] | None:
    try:
        return stored_per_device(influx)
    except Exception:  # the database may still be starting: try again at the next poll
        return None


def _drain(stack: Stack, expected: Expected, began: float) -> Counter[tuple[str, str]]:
    """Until every expected reading is stored, or the count stops moving for 60 s (bounded)."""
    want = sum(expected.per_device.values())
    last: Counter[tuple[str, str]] = Counter()
    last_total, still_since = -1, time.monotonic()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        stack.rss.sample()
        stored = _stored_total(stack.influx)
        if stored is not None:
            total = sum(stored.values())
            last = stored
            try:
                spool_empty = stack.ingest.health()[1]["spool"]["batches"] == 0
            except (httpx.HTTPError, KeyError, ValueError):
                spool_empty = False
            if total == want and spool_empty:
                stack.note(began, f"drained: {total:,} stored")
                return stored
            if total != last_total:
                last_total, still_since = total, time.monotonic()
            elif time.monotonic() - still_since > 60 and spool_empty:
                stack.note(began, f"stored count stable at {total:,} of {want:,} for 60 s")
                return stored
        time.sleep(2)
    stack.note(began, "drain deadline reached")
    return last


def _drain_alerts(stack: Stack, began: float) -> None:
    """Alerts has judged everything queued for it and delivered its webhooks (bounded)."""

    def idle() -> bool:
        m = stack.alerts.metrics()
        queued = sum(v for k, v in m.items() if k.startswith("alerts_delivery_queue"))
        return bool(m) and queued == 0

    try:
        wait_until(idle, timeout=300, interval=1)
    except TimeoutError:
        stack.note(began, "alerts still had deliveries queued after 300 s")


def _gaps(
    influx: InfluxDB1Server,
    stored: Counter[tuple[str, str]],
    expected: Expected,
    clock: list[tuple[float, int, int]],
    injected: list[Fault],
    devices: list[Any],
) -> list[str]:
    """Where the missing readings of a few short devices are: runs of absent report times,
    mapped to when they were published and the fault under way then."""
    interval_ms = {d.id: d.interval_s * 1000 for d in devices}
    short = [k for k, n in expected.per_device.items() if stored.get(k, 0) < n][:5]
    out: list[str] = []
    for measurement, device in short:
        step = interval_ms.get(device, SCRIPTED_INTERVAL_MS)
        rows = influx.query(f"SELECT * FROM {measurement} WHERE device_id = '{device}'", db=DB)
        times = sorted(int(r["time"]) for r in rows)
        for before, after in itertools.pairwise(times):
            if after - before > step * 1.5:
                wall = _wall_at(clock, before + step)
                during = [
                    f.kind for f in injected if f.at_s - 5 <= wall <= f.at_s + f.duration_s + 30
                ]
                out.append(
                    f"{measurement}/{device}: {(after - before) // step - 1} missing after "
                    f"ts {before}, published ~{wall:.0f} s in, during {during or 'no fault'}"
                )
    return out


def _wall_at(clock: list[tuple[float, int, int]], ts: int) -> float:
    """Seconds after publishing began at which event time ``ts`` was being published."""
    for wall, _, sim in clock:
        if sim >= ts:
            return wall
    return clock[-1][0] if clock else 0.0


def _per_minute(clock: list[tuple[float, int, int]]) -> list[int]:
    """Messages published in each minute of the run (the pace the machine allowed)."""
    out: list[int] = []
    for wall, sent, _ in clock:
        minute = int(wall // 60)
        while len(out) <= minute:
            out.append(0)
        out[minute] = sent
    return [b - a for a, b in itertools.pairwise([0, *out])]


def _figures(
    expected: Expected,
    stored: Counter[tuple[str, str]],
    publisher: SoakPublisher,
    dead: MessageCollector,
    events: MessageCollector,
    receiver: WebhookReceiver,
    retained: list[dict[str, Any]],
    influx: InfluxDB1Server,
    episodes: list[Episode],
    injected: list[Fault],
    rss: RssWatch,
    seed: int,
    seconds: float,
    rate: float,
) -> dict[str, Any]:
    scripted = {e.device_id for e in episodes}
    missing = {
        k: n - stored.get(k, 0) for k, n in expected.per_device.items() if stored.get(k, 0) < n
    }
    extra = {
        k: stored[k] - expected.per_device.get(k, 0)
        for k in stored
        if stored[k] > expected.per_device.get(k, 0)
    }
    by_measurement: dict[str, dict[str, int]] = {}
    for (m, _), n in expected.per_device.items():
        by_measurement.setdefault(m, {"published": 0, "stored": 0})["published"] += n
    for (m, _), n in stored.items():
        by_measurement.setdefault(m, {"published": 0, "stored": 0})["stored"] += n
    dead_seen: Counter[str] = Counter()
    dead_unique: set[tuple[str, str]] = set()
    for msg in dead.received:
        with contextlib.suppress(ValueError):
            body = json.loads(msg.payload)
            dead_seen[body.get("code", "?")] += 1
            dead_unique.add((body.get("topic", ""), body.get("payload_sha256", "")))
    fired: set[str] = set()
    resolved: set[str] = set()
    firing_events: Counter[str] = Counter()
    for msg in events.received:
        with contextlib.suppress(ValueError):
            e = json.loads(msg.payload)
            if e.get("rule") == "bin_full" and e.get("device_id") in scripted:
                (fired if e.get("state") == "firing" else resolved).add(e["device_id"])
                if e.get("state") == "firing":
                    firing_events[e["device_id"]] += 1
    hooks = _webhook_figures(receiver, scripted)
    for _headers, body in list(receiver.requests):
        with contextlib.suppress(ValueError):
            e = json.loads(body)
            if e.get("rule") == "bin_full" and e.get("device_id") in scripted:
                (fired if e.get("state") == "firing" else resolved).add(e["device_id"])
    stuck = sorted(
        r.get("device_id", "?")
        for r in retained
        if r.get("rule") == "bin_full" and r.get("device_id") in scripted
    )
    published = sum(expected.per_device.values())
    total_stored = sum(stored.values())
    elapsed = (publisher.finished or time.monotonic()) - publisher.started
    return {
        "passed": published == total_stored and not missing and not extra,
        "seed": seed,
        "minutes": seconds / 60,
        "rate_target": rate,
        "rate_achieved": publisher.sent / elapsed if elapsed > 0 else 0.0,
        "rate_per_minute": _per_minute(publisher.clock),
        "messages_published": publisher.sent,
        "messages_acked": publisher.acked,
        "readings_published": published,
        "readings_stored": total_stored,
        "by_measurement": by_measurement,
        "missing": sum(missing.values()),
        "missing_devices": sorted(f"{m}/{d}: {n}" for (m, d), n in missing.items())[:20],
        "duplicates_stored": sum(extra.values()),
        "same_key_republished": expected.repeats,
        "out_of_order_published": expected.out_of_order,
        "statuses_published": expected.statuses,
        "dead_letters_expected": dict(expected.rejections),
        "dead_letters_seen": dict(dead_seen),
        "dead_letters_seen_unique": len(dead_unique),
        "alerts_expected": len(episodes),
        "alerts_fired": len(fired),
        "alerts_resolved": len(resolved),
        "alerts_refired": sum(n - 1 for n in firing_events.values() if n > 1),
        "alerts_stuck": stuck,
        "alerts_never_fired": sorted(scripted - fired),
        "alert_points_stored": dict(_alert_points(influx, scripted)) if influx.is_running else {},
        "webhook": hooks,
        "faults": [f"{f.at_s:.0f}s {f.kind} {f.duration_s:g}s" for f in injected],
        "faults_by_kind": dict(Counter(f.kind for f in injected)),
        "peak_rss_mb": {k: round(v / 1024, 1) for k, v in rss.peak_kb.items()},
        "peak_load_1min": round(rss.peak_load, 1),
    }


def _print(r: dict[str, Any]) -> None:
    hooks = r["webhook"]
    rows = [
        ("seed / duration", f"{r['seed']} / {r['minutes']:g} min"),
        (
            "publish rate target / achieved",
            f"{r['rate_target']:,.0f} / {r['rate_achieved']:,.0f} msg/s",
        ),
        (
            "messages published (acked by broker)",
            f"{r['messages_published']:,} ({r['messages_acked']:,})",
        ),
        ("faults injected", ", ".join(f"{k} x{n}" for k, n in sorted(r["faults_by_kind"].items()))),
        ("readings published (unique device, ts)", f"{r['readings_published']:,}"),
        (
            "readings stored",
            f"{r['readings_stored']:,}" + ("  EXACT" if r["passed"] else "  MISMATCH"),
        ),
        ("  missing / duplicates stored", f"{r['missing']:,} / {r['duplicates_stored']:,}"),
        ("  same (device, ts) published twice", f"{r['same_key_republished']:,}"),
        ("dead letters expected by reason", json.dumps(r["dead_letters_expected"], sort_keys=True)),
        (
            "dead letters seen on the topic",
            json.dumps(r["dead_letters_seen"], sort_keys=True)
            + f" ({r['dead_letters_seen_unique']:,} unique)",
        ),
        (
            "bin_full alerts expected / fired / resolved",
            f"{r['alerts_expected']} / {r['alerts_fired']} / {r['alerts_resolved']}",
        ),
        (
            "  stuck (still active) / never fired / re-fired",
            f"{len(r['alerts_stuck'])} / {len(r['alerts_never_fired'])} / {r['alerts_refired']}",
        ),
        (
            "webhook notifications delivered (unique) / duplicated",
            f"{hooks['unique']:,} / {hooks['duplicated']:,}",
        ),
        (
            "  scripted bin_full firing / resolved delivered",
            f"{hooks['scripted_firing']} / {hooks['scripted_resolved']}",
        ),
        (
            "peak RSS (VmHWM) MB",
            ", ".join(f"{k} {v:g}" for k, v in sorted(r["peak_rss_mb"].items())),
        ),
        ("machine load, peak 1-min average (2 cores)", f"{r['peak_load_1min']:g}"),
    ]
    print("\nsoak result")
    width = max(len(a) for a, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for key in (
        "rate_per_minute",
        "by_measurement",
        "missing_devices",
        "gaps",
        "alerts_stuck",
        "alerts_never_fired",
    ):
        if r.get(key):
            print(f"  {key}: {r[key]}")
    print(f"  webhook by rule/state: {json.dumps(hooks['by_rule'], sort_keys=True)}")
    print(f"  faults: {'; '.join(r['faults'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--workdir", type=Path, help="a new directory to keep data and logs in")
    args = parser.parse_args(argv)
    interrupt_on_signals()
    figures = run(args.minutes, args.seed, args.rate, args.workdir)
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
