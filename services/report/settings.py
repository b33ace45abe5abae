"""facility-report's settings: the contract's INFLUX_* and DEVICES_FILE, plus REPORT_*."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator

from common.settings import CommonSettings, http_url, url_list


class ReportSettings(CommonSettings):
    report_out_dir: Path = Field(
        default=Path("reports"), description="Where the HTML and PDF files are written."
    )
    report_timezone: str = Field(
        default="Asia/Seoul", description="Whose days the report counts (the facilities')."
    )
    # People's channels: the alerts' apprise URLs unless the report has its own.
    report_apprise_urls: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REPORT_APPRISE_URLS", "ALERTS_APPRISE_URLS"),
        description="apprise URLs (comma or space separated) the report is sent to, with the "
        "PDF attached; ALERTS_APPRISE_URLS when unset.",
    )
    # Not the alerts' webhook: its receivers expect alert JSON, not a report.
    report_webhook_url: str | None = Field(
        default=None, description="POST the figures (JSON) and the PDF (base64) here."
    )
    report_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Signs webhook deliveries (webhook-id/-timestamp/-signature headers).",
    )
    # Generous: the year-to-date tonnes read a year of raw bin weights (as the dashboards'
    # gauge does) until derived collection events exist; the report runs once a week.
    report_timeout_s: float = Field(default=300.0, gt=0, description="Per InfluxDB query.")

    @field_validator("report_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @property
    def apprise_urls(self) -> list[str]:
        return url_list(self.report_apprise_urls)
