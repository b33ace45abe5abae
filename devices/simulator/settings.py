"""``SIMULATOR_*`` settings (environment, ``.env``); command-line flags override them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from common.settings import CommonSettings


class SimulatorSettings(CommonSettings):
    simulator_scenario: str = "demo"
    simulator_scenario_dir: Path = Path("config/scenarios")
    # The instant a re-anchored scenario (anchor: latest_week) is placed against, instead of
    # now: give a run and its verify the same value and they pick the same window even when a
    # week boundary passes between them.
    simulator_anchor_at: datetime | None = None
    simulator_seed: int | None = None
    simulator_speed: float | None = Field(default=None, gt=0)
    simulator_summary_file: Path | None = None
    # Kept fresh while the run's broker connections are up; `facility-simulator healthcheck`
    # judges it (the container healthcheck). Unset: no file.
    simulator_health_file: Path | None = None
    # Unacknowledged QoS 1 messages per connection (paho's max_inflight).
    simulator_max_inflight: int = Field(default=100, ge=1, le=65_535)
    simulator_connect_timeout_s: float = Field(default=30.0, gt=0)
    simulator_flush_timeout_s: float = Field(default=60.0, gt=0)
    # Faster than real time with one connection per device: every this many simulated
    # seconds wait for every PUBACK, bounding the skew between devices' streams (0 = never).
    simulator_sync_every_s: float = Field(default=60.0, ge=0)
    simulator_fleet: bool = True
    simulator_progress: Literal["auto", "on", "off"] = "auto"
    # Load mode: "fast" writes pre-encoded MQTT packets itself, "paho" goes through paho.
    simulator_load_publisher: Literal["fast", "paho"] = "fast"
