"""Settings every program shares (the contract's environment variables), via pydantic-settings.

Each program subclasses :class:`CommonSettings` with fields named after their variables
(``ingest_spool_dir`` reads ``INGEST_SPOOL_DIR``). Values come from the environment, a ``.env``
file, and a secrets directory (``SECRETS_DIR``, default ``/run/secrets``) for tokens/passwords.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.config_errors import join, problems
from common.durations import DurationS
from common.identity import DEFAULT_MAX_UNKNOWN, UnknownDevices
from common.kinds import MAX_FUTURE_MS
from common.redact import redact_urls
from common.topics import TopicError, check_prefix

DEFAULT_SECRETS_DIR = "/run/secrets"

# Pieces several programs' settings share (each under its own variable name).
HealthHost = Annotated[str, Field(description="Address of the /healthz and /metrics server.")]
HealthPort = Annotated[
    int, Field(ge=0, le=65535, description="Port of /healthz and /metrics (0 = any free).")
]


class ConfigError(Exception):
    """Invalid configuration: the message names the variable and what is wrong."""


class CommonSettings(BaseSettings):
    """The shared variables of the contract. Field name upper-cased = variable name."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    mqtt_url: str = "mqtt://localhost:1883"
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_client_id: str | None = None
    mqtt_topic_prefix: str = "facility"
    # Extension: "5" (default) or "3.1.1" for brokers without MQTT v5 (e.g. amqtt).
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    mqtt_ca_file: Path | None = None
    mqtt_tls_insecure: bool = False
    mqtt_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)

    influx_url: str = "http://localhost:8086"
    influx_api_version: Literal["1", "2"] = "2"
    influx_token: SecretStr | None = None
    influx_org: str = "facility"
    influx_bucket: str = "facility"

    devices_file: Path = Path("config/devices.yaml")
    unknown_devices: UnknownDevices = Field(
        default="accept",
        description="A reading or status from a (site, kind, device_id) not in DEVICES_FILE: "
        "`reject` (dead letter `unknown_device`; compose sets this) or `accept` (labs, "
        "synthetic fleets).",
    )
    unknown_devices_max: int = Field(
        default=DEFAULT_MAX_UNKNOWN,
        ge=0,
        description="With `accept`: distinct unregistered (site, kind, device_id) let through; "
        "beyond, dead letter `unknown_device_limit` (bounds InfluxDB series and alerts' state).",
    )
    max_future_s: DurationS = Field(
        default=MAX_FUTURE_MS / 1000,
        gt=0,
        le=7 * 86_400,
        description="A reading whose ts is further than this ahead of the receiver's clock is "
        "rejected (`ts_in_future`); raise it while a host's clock runs behind.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    # Services write their bound /healthz port here (with *_HTTP_PORT=0: no race for a port).
    http_port_file: Path | None = None

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError("must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("has no host")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return value

    @field_validator("influx_url")
    @classmethod
    def _influx_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("mqtt_topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        try:
            return check_prefix(value)
        except TopicError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    # -- derived values ------------------------------------------------------------------
    @property
    def max_future_ms(self) -> int:
        return int(self.max_future_s * 1000)

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url).hostname or "localhost"

    @property
    def mqtt_port(self) -> int:
        parts = urlsplit(self.mqtt_url)
        return parts.port or (8883 if self.mqtt_tls else 1883)

    @property
    def mqtt_tls(self) -> bool:
        return urlsplit(self.mqtt_url).scheme in ("mqtts", "ssl")

    def mqtt_credentials(self) -> tuple[str | None, str | None]:
        """``MQTT_USERNAME``/``MQTT_PASSWORD`` override the URL's ``user:password``."""
        parts = urlsplit(self.mqtt_url)
        user = self.mqtt_username or (unquote(parts.username) if parts.username else None)
        if self.mqtt_password is not None:
            password: str | None = self.mqtt_password.get_secret_value()
        else:
            password = unquote(parts.password) if parts.password else None
        return user, password


S = TypeVar("S", bound=BaseSettings)


def http_url(value: str | None) -> str | None:
    """A validator's body for a URL setting that must be http(s) (an empty value is unset)."""
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value or None


def url_list(text: str | None) -> list[str]:
    """The URLs of a comma- or space-separated setting (apprise's)."""
    return [url for url in (text or "").replace(",", " ").split() if url]


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings or raise :class:`ConfigError` with a one-line message naming the variable."""
    secrets_dir = os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR)
    kwargs: dict[str, Any] = dict(overrides)
    if Path(secrets_dir).is_dir():
        kwargs["_secrets_dir"] = secrets_dir
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        parts = []
        for problem in problems(exc):
            name = str(problem.loc[0]).upper() if problem.loc else cls.__name__
            # A message may quote the value too: URLs' passwords are masked in the whole part.
            part = f"{name}: {problem.message} (got {_redact(name, problem.value)})"
            parts.append(redact_urls(part))
        raise ConfigError(join("invalid setting ", parts)) from None


def load_or_exit(cls: type[S], program: str, **overrides: object) -> S:
    """For entry points: print the one-line error and exit 2 on invalid configuration."""
    try:
        return load_settings(cls, **overrides)
    except ConfigError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _redact(name: str, value: object) -> str:
    if any(word in name for word in ("PASSWORD", "TOKEN", "SECRET", "KEY")):
        return "<redacted>"
    text = redact_urls(repr(value))  # before cutting, so no half of a password is left
    return text if len(text) <= 60 else text[:57] + "..."
