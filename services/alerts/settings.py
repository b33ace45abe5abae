"""Settings of facility-alerts: the shared variables plus every ``ALERTS_*`` variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from common.durations import DurationS
from common.settings import CommonSettings, HealthHost, HealthPort, http_url, url_list


class AlertsSettings(CommonSettings):
    """Environment of facility-alerts (field name upper-cased = variable name)."""

    alerts_rules_file: Path = Field(
        default=Path("config/rules.yaml"), description="Rules as code, validated at start."
    )
    alerts_http_host: HealthHost = "127.0.0.1"
    alerts_http_port: HealthPort = 9102
    alerts_influx_enabled: bool = Field(
        default=True, description="Write alert and dispatch points to InfluxDB (INFLUX_*)."
    )
    alerts_webhook_url: str | None = Field(
        default=None, description="POST every firing/resolved alert here as JSON."
    )
    alerts_webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key of the webhook-signature (id, timestamp and body) and "
        "X-Facility-Signature (body) headers.",
    )
    alerts_dispatch_webhook_url: str | None = Field(
        default=None, description="Also POST every dispatch request here as JSON."
    )
    alerts_apprise_urls: str | None = Field(
        default=None, description="Apprise URLs (comma or space separated) for people."
    )
    alerts_apprise_group_s: DurationS = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Alerts within this window go out as one grouped message.",
    )
    alerts_retry_base_s: DurationS = Field(
        default=1.0, gt=0, le=600, description="First retry delay of a failed delivery."
    )
    alerts_retry_max_s: DurationS = Field(
        default=300.0, gt=0, le=86400, description="Longest delay between delivery retries."
    )
    alerts_queue_max: int = Field(
        default=10_000, ge=10, description="Pending deliveries kept per notifier."
    )
    alerts_state_dir: Path = Field(
        default=Path("data/alerts"),
        description="Outboxes of the webhook and apprise queues: undelivered items survive a "
        "crash or restart and are retried first at the next start.",
    )
    # Riders only fill room left on a truck that goes anyway (heaviest first, never another
    # truck), so a low level is cheap; at 70 % the city's trucks ran more trips than a weekly
    # round (scripts/policy_eval.py).
    alerts_opportunistic_pct: float = Field(
        default=40.0, ge=0, le=100, description="Bins of the same zone above this ride along."
    )
    alerts_dispatch_timeout_s: int = Field(
        default=8 * 3600, ge=60, description="An open dispatch older than this re-opens its bins."
    )
    alerts_live_lag_s: int = Field(
        default=300,
        ge=1,
        description="A stream whose readings are this fresh is live: absence also uses the clock.",
    )
    alerts_allowed_lateness_s: DurationS = Field(
        default=120.0,
        ge=0,
        le=3600,
        description="Bounded out-of-orderness: how far behind the stream's watermark (its "
        "latest reading ts, from any device) a device's reading may still arrive. Devices "
        "publish on their own connections, so a backfill interleaves them with skew; absence "
        "is judged at watermark (or live clock) minus this, so a device is called silent "
        "only this much later, never because other devices ran ahead.",
    )
    alerts_tick_s: DurationS = Field(
        default=1.0, gt=0, le=60, description="How often live absence rules look at the clock."
    )
    alerts_sync_timeout_s: DurationS = Field(
        default=10.0, gt=0, description="How long to wait for retained state at start."
    )
    alerts_history_max_points: int = Field(
        default=1000,
        ge=16,
        le=1_000_000,
        description="Points of history a rule keeps per device (forecast, rate); beyond it the "
        "history is thinned to every other point, still spanning its whole window.",
    )
    alerts_max_open_alerts: int = Field(
        default=10_000,
        ge=1,
        description="Pending and firing alerts at once; a new one beyond it is refused "
        "(logged, counted in alerts_refused_alerts_total), never a crash.",
    )
    alerts_receive_maximum: int = Field(
        default=1000,
        ge=1,
        le=65535,
        description="MQTT v5 Receive Maximum: telemetry the broker hands over before alerts "
        "has judged it (and made its effects durable) and acknowledged it. Bounds what is held "
        "while the retained state is restored after a restart.",
    )

    @field_validator("alerts_webhook_url", "alerts_dispatch_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @property
    def apprise_urls(self) -> list[str]:
        return url_list(self.alerts_apprise_urls)
