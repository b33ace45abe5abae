"""Settings of facility-grafana: the shared variables plus GRAFANA_* for the target server."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from common.settings import CommonSettings

PACKAGE_DIR = Path(__file__).resolve().parent


class GrafanaSettings(CommonSettings):
    grafana_url: str = "http://localhost:3000"
    # A service-account token (Editor on the folder, data source writer). Unset: the URL's
    # user:password, if any, is used (handy for a local admin:admin Grafana).
    grafana_token: SecretStr | None = None
    grafana_folder: str = "Facility Monitor"
    grafana_folder_uid: str = "facility-monitor"
    grafana_datasource_name: str = "Facility InfluxDB"
    # How Grafana reaches InfluxDB, when that differs from INFLUX_URL as this program sees it
    # (e.g. http://influxdb:8086 inside docker compose).
    grafana_influx_url: str | None = None
    grafana_timeout_s: float = Field(default=10.0, gt=0, le=300)
    grafana_dashboards_dir: Path = PACKAGE_DIR / "dashboards"

    @field_validator("grafana_url", "grafana_influx_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")
