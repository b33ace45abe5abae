"""Settings of facility-ingest: the shared variables plus every ``INGEST_*`` variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from common.durations import DurationS, duration_s
from common.settings import CommonSettings, HealthHost, HealthPort

_FOREVER = ("", "0", "inf", "infinite", "forever")


def parse_retention_s(text: str) -> int:
    """A retention: a duration (``30d``, ``12h``, ``90m``, ``3600`` seconds) or ``0``/``inf``
    (keep forever, returned as 0) -> whole seconds."""
    if text.strip().lower() in _FOREVER:
        return 0
    seconds = duration_s(text)
    if seconds < 1:
        raise ValueError(f"{text!r} is shorter than a second; use 0 to keep forever")
    return int(seconds)


class IngestSettings(CommonSettings):
    """Environment of facility-ingest (field name upper-cased = variable name)."""

    ingest_sink: Literal["influx", "file"] = Field(
        default="influx",
        description="Where points go: `influx` (INFLUX_URL, per INFLUX_API_VERSION) or `file` "
        "(line protocol appended to INGEST_FILE_PATH, loadable with `influx write`).",
    )
    ingest_file_path: Path = Field(
        default=Path("data/ingest/points.lp"),
        description="Output of the file sink: line protocol, precision ms, one point a line.",
    )
    ingest_batch_size: int = Field(
        default=5000,
        ge=1,
        le=50_000,
        description="Points per write: a batch is written when it holds this many points ...",
    )
    ingest_flush_interval_ms: int = Field(
        default=200,
        ge=1,
        le=60_000,
        description="... or when its oldest message has waited this long (bounds the lag).",
    )
    ingest_receive_maximum: int = Field(
        default=0,
        ge=0,
        le=65_535,
        description="MQTT v5 Receive Maximum: unacknowledged messages the broker may send us; "
        "0 = 3 x INGEST_BATCH_SIZE (capped at 65535). This is the pipeline's memory bound.",
    )
    ingest_spool_dir: Path = Field(
        default=Path("data/ingest/spool"),
        description="Durable spool: batches the database did not take are appended and fsynced "
        "here before their messages are acknowledged, then replayed in order.",
    )
    ingest_spool_max_bytes: int = Field(
        default=1024**3,
        ge=64 * 1024,
        description="Spool size cap; when reached, ingest stops acknowledging (the broker keeps "
        "the messages) instead of dropping anything.",
    )
    ingest_spool_segment_bytes: int = Field(
        default=8 * 1024**2,
        ge=4096,
        description="Spool segment size; a fully replayed segment file is deleted.",
    )
    ingest_deadletter_dir: Path | None = Field(
        default=None,
        description="Durable dead-letter store (whole rejected messages, for `facility-ingest "
        "deadletters list|redrive`); unset = `deadletters` beside INGEST_SPOOL_DIR.",
    )
    ingest_deadletter_max_bytes: int = Field(
        default=256 * 1024**2,
        ge=64 * 1024,
        description="Dead-letter store cap; beyond it the oldest segment is deleted (counted in "
        "ingest_deadletters_dropped).",
    )
    ingest_deadletter_segment_bytes: int = Field(
        default=8 * 1024**2,
        ge=4096,
        description="Dead-letter store segment size (the unit the cap deletes).",
    )
    ingest_write_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Attempts per batch on 429/5xx/connection errors before it is spooled.",
    )
    ingest_retry_base_ms: int = Field(
        default=200, ge=1, description="First retry delay; doubles per attempt, with jitter."
    )
    ingest_retry_max_ms: int = Field(
        default=10_000,
        ge=1,
        description="Longest delay between retries, and between replay attempts of the spool.",
    )
    ingest_write_timeout_ms: int = Field(
        default=10_000,
        ge=100,
        description="HTTP read timeout of one write to the database (waiting for its answer).",
    )
    ingest_connect_timeout_ms: int = Field(
        default=2_000, ge=100, description="HTTP connect timeout to the database."
    )
    ingest_probe_timeout_ms: int = Field(
        default=1_000,
        ge=100,
        description="Read timeout of the ping that probes a database which stopped answering. "
        "A write failing after this long (or INGEST_WRITE_ATTEMPTS failures in a row) opens "
        "the circuit breaker: batches are spooled without a write, and only this probe is "
        "tried (at the retry delays) until the database answers.",
    )
    ingest_bisect_max_writes: int = Field(
        default=256,
        ge=3,
        le=10_000,
        description="Most writes spent finding the refused lines of one batch; a batch needing "
        "more, or with more than half its lines refused, is spooled as a sink failure.",
    )
    ingest_create_bucket: bool = Field(
        default=True,
        description="Create the bucket (v2) or database (v1) at start when it is missing.",
    )
    ingest_retention: str = Field(
        default="0",
        description="Retention of a bucket/database created at start: e.g. 30d, 52w, 0 = forever.",
    )
    ingest_shared_group: str | None = Field(
        default=None,
        description="Join this MQTT v5 shared-subscription group ($share/<group>/...) so "
        "several replicas split the load.",
    )
    ingest_stats_interval_s: DurationS = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Every this many seconds write ingest's own figures as points "
        "(`ingest_stats`: cumulative received/stored/rejected/spooled/replayed/retries, spool "
        "size, write p99/max ms and lag p99 s over the interval; `ingest_rejections`: "
        "cumulative count per reason), tagged client_id, through the same batches/spool as "
        "the data; 0 = off.",
    )
    ingest_http_host: HealthHost = "127.0.0.1"
    ingest_http_port: HealthPort = 9101
    ingest_shutdown_timeout_s: DurationS = Field(
        default=8.0,
        gt=0,
        le=60,
        description="On SIGTERM, the bound of the whole stop: flush or spool what is in flight, "
        "acknowledge, disconnect; a write still hanging then is left unacknowledged.",
    )

    @field_validator("ingest_retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        parse_retention_s(value)
        return value

    @field_validator("ingest_shared_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(ch in value for ch in "/+#")):
            raise ValueError("must be a non-empty name without '/', '+' or '#'")
        return value or None

    @property
    def retention_s(self) -> int:
        return parse_retention_s(self.ingest_retention)

    @property
    def deadletter_dir(self) -> Path:
        return self.ingest_deadletter_dir or self.ingest_spool_dir.parent / "deadletters"

    @property
    def receive_maximum(self) -> int:
        return self.ingest_receive_maximum or min(65_535, 3 * self.ingest_batch_size)
