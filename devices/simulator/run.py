"""Wiring for one scenario run: window, engine, MQTT (or a JSON-lines file), progress, summary."""

from __future__ import annotations

import argparse
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from common.devices import load_registry
from common.messages import DispatchRequest
from common.topics import Topics
from devices.simulator.clock import NoWait, Pacer, ScaledClock, SkewBound
from devices.simulator.engine import Engine, Outgoing
from devices.simulator.health import Heartbeat
from devices.simulator.mqtt_out import MqttPublisher
from devices.simulator.progress import SimProgress
from devices.simulator.scenario import Scenario
from devices.simulator.settings import SimulatorSettings
from devices.simulator.summary import build_summary, render, write_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    start_ms: int
    end_ms: int
    speed: float  # math.inf for a backfill


def rfc3339_arg(value: str) -> datetime:
    """An argparse type: an RFC 3339 time with its UTC offset."""
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an RFC 3339 time") from None
    if stamp.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} needs a UTC offset (e.g. +09:00 or Z)")
    return stamp


def anchor_ms(anchor_at: datetime | None) -> int:
    """The instant a scenario's window is placed against: ``anchor_at``, else now."""
    if anchor_at is not None:
        return int(anchor_at.timestamp() * 1000)
    return time.time_ns() // 1_000_000


def resolve_window(
    scenario: Scenario,
    *,
    now_ms: int,
    start: datetime | None = None,
    duration_s: float | None = None,
    speed: float | None = None,
    backfill: bool | None = None,
) -> Window:
    """CLI values over the scenario's. Without a start, a faster-than-real-time run replays the
    window that ends now (its timestamps must not run ahead of the receivers' clocks). A
    scenario's own start is placed by its ``anchor`` relative to ``now_ms``; ``--start`` is
    taken as given."""
    duration = scenario.duration_s if duration_s is None else duration_s
    is_backfill = scenario.backfill if backfill is None else backfill
    pace = math.inf if is_backfill else (speed or scenario.speed)
    if start is not None:
        start_ms = int(start.timestamp() * 1000)
    elif scenario.start is not None:
        start_ms = scenario.anchored_start_ms(int(scenario.start.timestamp() * 1000), now_ms)
    elif pace > 1:
        start_ms = (now_ms - int(duration * 1000)) // 1000 * 1000
    else:
        start_ms = now_ms // 1000 * 1000
    return Window(start_ms, start_ms + int(duration * 1000), pace)


class JsonLinesPublisher:
    """``--output FILE``: every message as one JSON line instead of MQTT (no broker needed)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def publish(self, message: Outgoing) -> None:
        self.out.write(
            json.dumps(
                {
                    "topic": message.topic,
                    "retain": message.retain,
                    "payload": message.payload.decode("utf-8", "replace"),
                },
                separators=(",", ":"),
            )
            + "\n"
        )


def run_scenario(
    settings: SimulatorSettings,
    scenario: Scenario,
    window: Window,
    *,
    seed: int | None,
    stop: threading.Event,
    output: Path | None = None,
    on_engine: Callable[[Engine], None] | None = None,
) -> dict[str, Any]:
    """Run a scenario to the end of its window (or until ``stop``); return the summary."""
    registry = load_registry(settings.devices_file)
    topics = Topics(settings.mqtt_topic_prefix)
    began = time.monotonic()
    if output is not None:
        with output.open("w", encoding="utf-8") as out:
            publisher = JsonLinesPublisher(out)
            engine = Engine(
                scenario, registry, topics, publisher,
                start_ms=window.start_ms, end_ms=window.end_ms, seed=seed,
            )  # fmt: skip
            engine.run(NoWait(window.start_ms), stop)
            engine.shutdown_statuses()
        return build_summary(engine, time.monotonic() - began)

    holder: dict[str, Engine] = {}

    def on_dispatch(request: DispatchRequest) -> None:
        holder["engine"].submit_dispatch(request)

    # Build the engine first (it validates the scenario against the registry), then connect.
    engine = Engine(
        scenario, registry, topics, _Deferred(),
        start_ms=window.start_ms, end_ms=window.end_ms, seed=seed,
    )  # fmt: skip
    holder["engine"] = engine
    if on_engine is not None:
        on_engine(engine)
    clients = {sd.device.id: sd.status_topic for sd in engine.devices}
    mqtt = MqttPublisher(
        settings,
        topics,
        clients,
        shared=scenario.connection == "shared",
        window=settings.simulator_max_inflight,
        on_dispatch=on_dispatch if settings.simulator_fleet else None,
    )
    engine.publisher = mqtt
    stop_watch = threading.Thread(
        target=_forward_stop, args=(stop, mqtt.stop_event, engine), daemon=True
    )
    stop_watch.start()
    heartbeat = None
    if settings.simulator_health_file is not None:
        heartbeat = Heartbeat(settings.simulator_health_file, lambda: mqtt.links)
    try:
        mqtt.start(settings.simulator_connect_timeout_s)
        if heartbeat is not None:
            heartbeat.start()
        pacer: Pacer = ScaledClock(window.start_ms, window.speed)
        if window.speed > 1 and not mqtt.shared and settings.simulator_sync_every_s > 0:
            timeout = settings.simulator_flush_timeout_s
            pacer = SkewBound(
                pacer, lambda: mqtt.barrier(timeout), int(settings.simulator_sync_every_s * 1000)
            )
        expected_wall = (window.end_ms - window.start_ms) / 1000 / window.speed
        enabled = SimProgress.wanted(
            settings.simulator_progress, expected_wall if math.isfinite(expected_wall) else 10
        )
        with SimProgress(window.start_ms, window.end_ms, enabled) as bar:
            engine.run(pacer, stop, bar.update)
        # Every reading acknowledged before any 'offline': a receiver stamps a replayed status
        # with its stream's time, which must have reached the window's end by then.
        mqtt.barrier(settings.simulator_flush_timeout_s)
        engine.shutdown_statuses()
        if not mqtt.flush(settings.simulator_flush_timeout_s):
            log.warning("broker did not acknowledge every message before the flush timeout")
    finally:
        stop.set()
        if heartbeat is not None:
            heartbeat.stop()
        mqtt.stop()
    return build_summary(engine, time.monotonic() - began)


class _Deferred:
    def publish(self, message: Outgoing) -> None:
        raise RuntimeError(f"publisher not connected yet ({message.topic})")


def _forward_stop(stop: threading.Event, publisher_stop: threading.Event, engine: Engine) -> None:
    stop.wait()
    engine.wake.set()
    publisher_stop.set()


def finish(summary: dict[str, Any], summary_file: Path | None) -> None:
    print(render(summary), flush=True)
    if summary_file is not None:
        write_summary(summary_file, summary)
