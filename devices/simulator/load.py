"""Load mode: valid e-waste bin readings for N synthetic devices at R msg/s in total (0 = as
fast as the broker acknowledges), QoS 1, until ``--count`` messages or ``--load-seconds``.

Timestamps start a day in the past and advance 1 ms per round over all devices, so every point
is distinct and none runs ahead of the receivers' clocks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from common.mqtt import MqttLink
from common.settings import CommonSettings
from common.topics import Topics
from devices.simulator.fastpub import FastPublisher, topic_bytes

LOAD_SITE = "ewaste"
DAY_MS = 86_400_000
_TEMPLATE = b'{"ts":%d,"seq":%d,"weight_kg":%.2f,"fill_pct":%.1f}'


@dataclass(frozen=True, slots=True)
class LoadResult:
    messages: int
    seconds: float
    publisher: str
    devices: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def load_topics(topics: Topics, devices: int) -> list[str]:
    return [topics.telemetry(LOAD_SITE, "ewaste_bin", f"load-{i:05d}") for i in range(devices)]


def payload(k: int, devices: int, start_ms: int) -> bytes:
    """Message ``k`` of the run: device ``k % devices``, its reading number ``k // devices``."""
    seq = k // devices
    fill = (seq % 1000) / 10
    return _TEMPLATE % (start_ms + seq, seq, fill * 2.4, fill)


@dataclass(slots=True)
class _Schedule:
    """What both publishers share: message numbering, the count and time limits, the pace."""

    rate: float
    count: int | None
    seconds: float | None
    start_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000 - DAY_MS)
    t0: float = 0.0

    @property
    def limit(self) -> int:
        return self.count if self.count is not None else 1 << 62

    def begin(self) -> None:
        self.t0 = time.perf_counter()

    def over(self, sent: int, stop: threading.Event) -> bool:
        """The run is done: enough messages sent, time is up, or asked to stop."""
        if sent >= self.limit or stop.is_set():
            return True
        if not self.seconds:
            return False
        return time.perf_counter() >= self.t0 + self.seconds

    def pace(self, sent: int, stop: threading.Event) -> None:
        """Wait until message ``sent`` is due at the requested rate (no wait at rate 0)."""
        if self.rate > 0:
            ahead = self.t0 + sent / self.rate - time.perf_counter()
            if ahead > 0:
                stop.wait(ahead)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def run_fast(
    settings: CommonSettings,
    devices: int,
    rate: float,
    count: int | None,
    seconds: float | None,
    stop: threading.Event,
    window: int = 2000,
) -> LoadResult:
    topics = [topic_bytes(t) for t in load_topics(Topics(settings.mqtt_topic_prefix), devices)]
    run = _Schedule(rate, count, seconds)
    # Batches small enough to keep a requested rate smooth, big enough to amortise syscalls.
    batch_max = 256 if rate <= 0 else max(1, min(256, int(rate / 100)))
    with FastPublisher(settings, "facility-sim-load", window=window) as pub:
        run.begin()
        sent = 0
        while not run.over(sent, stop):
            run.pace(sent, stop)
            n = min(batch_max, pub.room(), run.limit - sent)
            if n > 0:
                packets = [
                    pub.packet(topics[k % devices], payload(k, devices, run.start_ms))
                    for k in range(sent, sent + n)
                ]
                pub.send(packets)
                sent += n
            pub.wait_acks(block=pub.room() == 0)
            pub.ping_if_idle()
        pub.drain()
        elapsed = run.elapsed()
    return LoadResult(sent, elapsed, "fast", devices)


def run_paho(
    settings: CommonSettings,
    devices: int,
    rate: float,
    count: int | None,
    seconds: float | None,
    stop: threading.Event,
    window: int = 50,
) -> LoadResult:
    """The same load through paho (single-threaded loop, bounded in-flight): the baseline."""
    topics = load_topics(Topics(settings.mqtt_topic_prefix), devices)
    run = _Schedule(rate, count, seconds)
    link = MqttLink(settings, "facility-sim-load", max_inflight=window)
    client = link.client
    acked = [0]

    def on_publish(*_args: object) -> None:
        acked[0] += 1

    client.on_publish = on_publish
    client.connect(settings.mqtt_host, settings.mqtt_port, settings.mqtt_keepalive_s)
    deadline_connect = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline_connect:
            raise TimeoutError("MQTT broker did not accept the load connection within 10 s")
        client.loop(0.1)
    run.begin()
    sent = 0
    while not run.over(sent, stop):
        run.pace(sent, stop)
        while sent < run.limit and sent - acked[0] < window:
            client.publish(topics[sent % devices], payload(sent, devices, run.start_ms), qos=1)
            sent += 1
        client.loop_read(1000)
        if client.want_write():
            client.loop_write()
    drain_deadline = time.monotonic() + 30
    while acked[0] < sent and time.monotonic() < drain_deadline:
        client.loop(0.05)
    elapsed = run.elapsed()
    client.disconnect()
    if acked[0] < sent:
        raise TimeoutError(f"broker acknowledged {acked[0]} of {sent} messages")
    return LoadResult(sent, elapsed, "paho", devices)


def run_load(
    settings: CommonSettings,
    devices: int,
    rate: float,
    count: int | None,
    seconds: float | None,
    stop: threading.Event,
    publisher: str | None = None,
) -> int:
    """CLI entry for load mode; prints the achieved rate. Returns the exit code."""
    kind = publisher or getattr(settings, "simulator_load_publisher", "fast")
    if count is None and seconds is None:
        seconds = 10.0
    try:
        run = run_paho if kind == "paho" else run_fast
        result = run(settings, devices, rate, count, seconds, stop)
    except (OSError, TimeoutError, mqtt.WebsocketConnectionError) as exc:
        print(f"facility-simulator: load mode failed: {exc}", flush=True)
        return 1
    print(
        f"load: {result.messages} messages from {devices} devices in {result.seconds:.2f} s: "
        f"{result.rate:,.0f} msg/s (QoS 1, all acknowledged, {result.publisher} publisher)",
        flush=True,
    )
    return 0
