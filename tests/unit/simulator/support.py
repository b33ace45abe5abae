"""Running the simulator engine in-process with a publisher that just keeps the bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.devices import Registry, load_registry
from common.topics import Topics
from devices.simulator.clock import NoWait
from devices.simulator.engine import Engine, Outgoing
from devices.simulator.scenario import Scenario, load_scenario

REPO = Path(__file__).resolve().parents[3]
SCENARIOS = REPO / "config" / "scenarios"
TOPICS = Topics("facility")


def registry() -> Registry:
    return load_registry(REPO / "config" / "devices.yaml")


class Collected:
    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    def publish(self, message: Outgoing) -> None:
        self.messages.append(message)

    def telemetry(self) -> list[Outgoing]:
        return [m for m in self.messages if m.topic.endswith("/telemetry")]


def scenario(name: str = "ci-smoke", **changes: Any) -> Scenario:
    return load_scenario(name, SCENARIOS).model_copy(update=changes)


def run_engine(sc: Scenario, seed: int | None = None) -> tuple[Engine, Collected]:
    assert sc.start is not None
    start_ms = int(sc.start.timestamp() * 1000)
    out = Collected()
    engine = Engine(
        sc, registry(), TOPICS, out,
        start_ms=start_ms, end_ms=start_ms + int(sc.duration_s * 1000), seed=seed,
    )  # fmt: skip
    engine.run(NoWait(start_ms))
    return engine, out
