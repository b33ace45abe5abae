"""Ingest benchmark: facility-ingest against a bare paho subscriber (the ceiling) and a naive
per-point ingester, same publisher, local Mosquitto; sink VictoriaMetrics, then InfluxDB 1.x.

Throughput is measured draining a backlog: the consumer's persistent session exists, N
messages are published while it is away, then it starts and we time first message -> last
one stored (so the publisher's speed does not cap the result). Also: end-to-end p99 lag at a
steady 5,000 msg/s, peak RSS while 100k messages are backlogged, two replicas in a shared
subscription group. Prints medians of ``repeats`` runs and the ratios.

Run: ``python -m scripts.bench.ingest [--repeats 3] [-n 100000]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from tests.servers import (
    InfluxDB1Server,
    MosquittoServer,
    Server,
    VictoriaMetricsServer,
    free_ports,
)

ROOT = Path(__file__).resolve().parents[2]
BINS = [f"bin-{i:03d}" for i in range(1, 45)]


# -- publishing ---------------------------------------------------------------------------------
class _Stamp:
    """Unique timestamps across runs, so VictoriaMetrics/InfluxDB never merge two runs."""

    def __init__(self) -> None:
        self.next_ms = int(time.time() * 1000) - 20 * 86400 * 1000

    def take(self, n: int) -> int:
        start, self.next_ms = self.next_ms, self.next_ms + n + 1000
        return start


STAMPS = _Stamp()


def _message(i: int, ts_ms: int) -> tuple[str, bytes]:
    device = BINS[i % len(BINS)]
    payload = (
        f'{{"ts": {ts_ms}, "weight_kg": {i % 997 * 0.1:.1f}, "fill_pct": {i % 100}, "seq": {i}}}'
    )
    return f"facility/ewaste/ewaste_bin/{device}/telemetry", payload.encode()


def _publisher(broker: MosquittoServer) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{time.monotonic_ns()}")
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def publish_backlog(broker: MosquittoServer, n: int) -> None:
    """N QoS 1 messages, each acknowledged by the broker before we return."""
    client = _publisher(broker)
    base = STAMPS.take(n)
    infos: list[mqtt.MQTTMessageInfo] = []
    for i in range(n):
        # Packet ids are 16-bit: keep well under 65535 unacknowledged or ids would collide.
        if i >= 30_000:
            infos[i - 30_000].wait_for_publish(120)
        infos.append(client.publish(*_message(i, base + i), qos=1))
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def forget_session(broker: MosquittoServer, client_id: str) -> None:
    """Delete a consumer's persistent session, or the broker would keep queueing every later
    run's messages for it and slow down all runs after it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port, clean_start=True)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def publish_live(broker: MosquittoServer, rate: float, seconds: float) -> int:
    """Publish at ``rate``/s with ts = publish time (what live devices do); returns count."""
    client = _publisher(broker)
    started = time.monotonic()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        now_ms = int(time.time() * 1000)
        client.publish(*_message(sent, now_ms), qos=1)
        sent += 1
        if sent % 25 == 0:
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    client.disconnect()
    client.loop_stop()
    return sent


# -- consumers ------------------------------------------------------------------------------
def _consumer(
    mode: str,
    broker: MosquittoServer,
    client_id: str,
    count: int,
    sink: Server | None,
    api: str = "2",
) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        "-m",
        "scripts.bench.ingest_consumers",
        mode,
        broker.host,
        str(broker.port),
        client_id,
        str(count),
    ]
    if sink is not None:
        args += [sink.url, api]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def run_baseline(
    mode: str, broker: MosquittoServer, n: int, sink: Server | None, api: str
) -> float:
    client_id = f"bench-{mode}-{time.monotonic_ns()}"
    _consumer(mode, broker, client_id, 0, sink, api).wait(60)  # creates the session
    publish_backlog(broker, n)
    proc = _consumer(mode, broker, client_id, n, sink, api)
    out, _ = proc.communicate(timeout=3600)
    forget_session(broker, client_id)
    result = json.loads(out.strip().splitlines()[-1])
    return float((result["count"] - 1) / (result["last"] - result["first"]))


class Ingest:
    """facility-ingest as a subprocess, read through its /metrics."""

    def __init__(self, workdir: Path, env: dict[str, str], name: str) -> None:
        self.port = free_ports(1)[0]
        self.env = {
            **os.environ,
            "INGEST_SPOOL_DIR": str(workdir / f"{name}-spool"),
            "INGEST_HTTP_PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            "SECRETS_DIR": str(workdir / "none"),
            **env,
        }
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    def start(self) -> Ingest:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.ingest"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_connected(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.http.get("/healthz").json()["mqtt"]["connected"]:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"ingest not connected; see {self.log}")

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.http.get("/metrics").text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def counter(self, name: str) -> float:
        try:
            return self.metrics().get(name, 0.0)
        except httpx.HTTPError:
            return 0.0

    def rss_mb(self) -> float:
        assert self.proc is not None
        return float(psutil.Process(self.proc.pid).memory_info().rss) / 2**20

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.http.close()


def _ingest_env(broker: MosquittoServer, sink: Server, api: str, **extra: str) -> dict[str, str]:
    return {
        "MQTT_URL": broker.url,
        "INFLUX_URL": sink.url,
        "INFLUX_API_VERSION": api,
        "INFLUX_TOKEN": "bench",
        **extra,
    }


def run_ingest(
    workdir: Path, broker: MosquittoServer, n: int, sink: Server, api: str, replicas: int = 1
) -> tuple[float, float]:
    """Drain a backlog of ``n``; returns (messages/s, peak RSS MB of one replica)."""
    tag = time.monotonic_ns()
    extra = {"INGEST_SHARED_GROUP": "bench"} if replicas > 1 else {}
    procs = [
        Ingest(
            workdir,
            _ingest_env(broker, sink, api, MQTT_CLIENT_ID=f"ing-{tag}-{r}", **extra),
            f"ingest-{tag}-{r}",
        )
        for r in range(replicas)
    ]
    for p in procs:  # create the persistent sessions, then leave
        p.start().wait_connected()
    for p in procs:
        p.stop()
    publish_backlog(broker, n)
    procs = [Ingest(workdir, p.env, f"ingest-{tag}-{i}b") for i, p in enumerate(procs)]
    for p in procs:
        p.env["INGEST_HTTP_PORT"] = str(p.port)
        p.start()
    peak = 0.0
    first = None
    deadline = time.monotonic() + 3600
    try:
        while first is None and time.monotonic() < deadline:
            if sum(p.counter('ingest_messages_received_total{channel="telemetry"}') for p in procs):
                first = time.time()
            else:
                time.sleep(0.01)
        while time.monotonic() < deadline:
            acked = sum(p.counter("ingest_messages_acked_total") for p in procs)
            peak = max(peak, *(p.rss_mb() for p in procs))
            if acked >= n:
                done = time.time()
                break
            time.sleep(0.05)
        else:
            raise TimeoutError("ingest did not drain the backlog")
    finally:
        for p in procs:
            p.stop()
            forget_session(broker, p.env["MQTT_CLIENT_ID"])
    assert first is not None
    return n / (done - first), peak


def _histogram(metrics: dict[str, float], name: str) -> list[tuple[float, float]]:
    buckets = []
    for key, value in metrics.items():
        if key.startswith(name + "_bucket{"):
            le = key.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), value))
    return sorted(buckets)


def _quantile(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float:
    """Prometheus-style histogram_quantile over the difference of two scrapes."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in counts:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return prev_le


def run_lag(
    workdir: Path, broker: MosquittoServer, sink: Server, api: str, rate: float, seconds: float
) -> dict[str, float]:
    client_id = f"ingest-lag-{time.monotonic_ns()}"
    ingest = Ingest(workdir, _ingest_env(broker, sink, api, MQTT_CLIENT_ID=client_id), client_id)
    ingest.start().wait_connected()
    try:
        before = ingest.metrics()
        started = time.monotonic()
        sent = publish_live(broker, rate, seconds)
        achieved = sent / (time.monotonic() - started)
        deadline = time.monotonic() + 60
        while (
            ingest.counter("ingest_end_to_end_lag_seconds_count")
            - before.get("ingest_end_to_end_lag_seconds_count", 0)
            < sent
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        after = ingest.metrics()
        name = "ingest_end_to_end_lag_seconds"
        b, a = _histogram(before, name), _histogram(after, name)
        return {
            "rate": achieved,
            "p50_s": _quantile(b, a, 0.5),
            "p99_s": _quantile(b, a, 0.99),
            "rss_mb": ingest.rss_mb(),
        }
    finally:
        ingest.stop()
        forget_session(broker, client_id)


# -- the whole benchmark ------------------------------------------------------------------------
@contextmanager
def _servers(
    workdir: Path,
) -> Iterator[tuple[MosquittoServer, VictoriaMetricsServer, InfluxDB1Server]]:
    with (
        MosquittoServer(workdir / "mosquitto") as broker,
        VictoriaMetricsServer(workdir / "vm") as vm,
        InfluxDB1Server(workdir / "influxdb") as influx,
    ):
        influx.create_database("facility")
        yield broker, vm, influx


def _median(runs: Callable[[], float], repeats: int, label: str) -> float:
    values = []
    for i in range(repeats):
        values.append(runs())
        print(f"  {label} run {i + 1}: {values[-1]:,.0f} msg/s", flush=True)
    return statistics.median(values)


def run(
    repeats: int = 3,
    n: int = 100_000,
    n_naive: int = 3_000,
    lag_rate: float = 5_000,
    lag_seconds: float = 10,
) -> dict[str, Any]:
    """Run everything; returns the medians and ratios (also printed)."""
    results: dict[str, Any] = {"repeats": repeats, "n": n, "n_naive": n_naive}
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
        _servers(Path(tmp)) as (
            broker,
            vm,
            influx,
        ),
    ):
        workdir = Path(tmp)
        results["ceiling"] = _median(
            lambda: run_baseline("ceiling", broker, n, None, "2"), repeats, "ceiling"
        )
        peaks: list[float] = []
        for label, sink, api in (("vm", vm, "2"), ("influx1", influx, "1")):
            results[f"naive_{label}"] = _median(
                functools.partial(run_baseline, "naive", broker, n_naive, sink, api),
                repeats,
                f"naive {label}",
            )

            def ingest_once(s: Server = sink, a: str = api) -> float:
                rate, peak = run_ingest(workdir, broker, n, s, a)
                peaks.append(peak)
                return rate

            results[f"ingest_{label}"] = _median(ingest_once, repeats, f"ingest {label}")
        results["ingest_peak_rss_mb"] = max(peaks)
        results["ingest_vm_2_replicas"] = _median(
            lambda: run_ingest(workdir, broker, n, vm, "2", replicas=2)[0], repeats, "2 replicas vm"
        )
        lags = [run_lag(workdir, broker, vm, "2", lag_rate, lag_seconds) for _ in range(repeats)]
        results["lag"] = {k: statistics.median(x[k] for x in lags) for k in lags[0]}
    results["ratio_vs_ceiling_vm"] = results["ingest_vm"] / results["ceiling"]
    results["ratio_vs_naive_vm"] = results["ingest_vm"] / results["naive_vm"]
    results["ratio_vs_naive_influx1"] = results["ingest_influx1"] / results["naive_influx1"]
    _print(results)
    return results


def _print(r: dict[str, Any]) -> None:
    lag = r["lag"]
    rows = [
        ("ceiling: bare paho QoS 1 subscriber, JSON parse only", f"{r['ceiling']:,.0f} msg/s", ""),
        (
            "naive ingester -> VictoriaMetrics (influxdb-client, per point)",
            f"{r['naive_vm']:,.0f} msg/s",
            "",
        ),
        (
            "facility-ingest -> VictoriaMetrics (v2 API)",
            f"{r['ingest_vm']:,.0f} msg/s",
            f"{r['ratio_vs_ceiling_vm']:.2f}x ceiling (target >= 0.7), "
            f"{r['ratio_vs_naive_vm']:.0f}x naive (target >= 6)",
        ),
        (
            "naive ingester -> InfluxDB 1.x (HTTP /write, per point)",
            f"{r['naive_influx1']:,.0f} msg/s",
            "",
        ),
        (
            "facility-ingest -> InfluxDB 1.x (v1 API)",
            f"{r['ingest_influx1']:,.0f} msg/s",
            f"{r['ratio_vs_naive_influx1']:.0f}x naive",
        ),
        (
            "facility-ingest x2 replicas, shared subscription -> VM",
            f"{r['ingest_vm_2_replicas']:,.0f} msg/s",
            "",
        ),
        (
            f"end-to-end lag at {lag['rate']:,.0f} msg/s (VM)",
            f"p50 {lag['p50_s']:.3f} s, p99 {lag['p99_s']:.3f} s",
            "target p99 <= 1 s",
        ),
        (
            f"peak RSS draining {r['n']:,} backlogged",
            f"{r['ingest_peak_rss_mb']:.0f} MB",
            "target <= 200 MB",
        ),
    ]
    print(
        f"\nmedians of {r['repeats']} runs; backlog {r['n']:,} messages (naive: {r['n_naive']:,})"
    )
    width = max(len(a) for a, _, _ in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>24}  {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-n", type=int, default=100_000, help="backlog size per run")
    parser.add_argument("--naive-n", type=int, default=3_000)
    parser.add_argument("--lag-seconds", type=float, default=10)
    parser.add_argument("--json", action="store_true", help="print the result dict as JSON")
    args = parser.parse_args(argv)
    results = run(args.repeats, args.n, args.naive_n, lag_seconds=args.lag_seconds)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
