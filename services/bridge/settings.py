"""Settings of facility-bridge: the shared variables plus every ``BRIDGE_*`` variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from common.durations import DurationS
from common.settings import CommonSettings, HealthHost, HealthPort
from services.bridge.mapping import DEFAULT_MAX_SOURCE_BYTES


class BridgeSettings(CommonSettings):
    """Environment of facility-bridge (field name upper-cased = variable name)."""

    bridge_sources_file: Path = Field(
        default=Path("config/sources.yaml"),
        description="The sources file: foreign subscriptions and how each message becomes "
        "contract readings.",
    )
    bridge_receive_maximum: int = Field(
        default=1000,
        ge=1,
        le=65_535,
        description="Unacknowledged source messages a source broker may send us (MQTT v5 "
        "Receive Maximum): the bridge's memory bound.",
    )
    bridge_max_inflight: int = Field(
        default=1000,
        ge=1,
        le=65_535,
        description="Readings published to our broker and not yet acknowledged (PUBACK).",
    )
    bridge_max_source_bytes: int = Field(
        default=DEFAULT_MAX_SOURCE_BYTES,
        ge=1024,
        le=16 * 1024 * 1024,
        description="A source message above this size is dead-lettered (too_large).",
    )
    bridge_http_host: HealthHost = "127.0.0.1"
    bridge_http_port: HealthPort = 9103
    bridge_shutdown_timeout_s: DurationS = Field(
        default=5.0,
        gt=0,
        le=60,
        description="On SIGTERM, how long to wait for our broker's acknowledgements of "
        "readings in flight (their source messages are acknowledged then) before leaving "
        "the rest to be redelivered.",
    )
