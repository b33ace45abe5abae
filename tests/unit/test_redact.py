"""Passwords and tokens in URLs never reach what a program prints: ``redact_url`` and the
settings error line."""

from __future__ import annotations

import pytest

from common.redact import redact_url, redact_urls
from common.settings import CommonSettings, ConfigError, load_settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://dev:s3cret@127.0.0.1:1883", "mqtt://dev:***@127.0.0.1:1883"),
        ("http://admin:s3cret@influx:8086/path?q=1", "http://admin:***@influx:8086/path?q=1"),
        ("https://s3cret@host", "https://***@host"),
        ("mqtts://:s3cret@host", "mqtts://***@host"),
        ("http://user:s3c@ret@host/", "http://***@host/"),
        ("http://host:8086", "http://host:8086"),
        ("http://host/a@b", "http://host/a@b"),
    ],
)
def test_redact_url_masks_user_info_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_urls_masks_every_url_in_a_sentence() -> None:
    text = "cannot reach mqtt://a:s3cret@h1 nor http://b:s3cret@h2:8086/x"
    assert redact_urls(text) == "cannot reach mqtt://a:***@h1 nor http://b:***@h2:8086/x"


def test_settings_errors_never_show_a_urls_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_URL", "ftp://dev:s3cret@127.0.0.1:1")
    monkeypatch.setenv("INFLUX_URL", "gopher://admin:s3cret-" + "x" * 80 + "@influx:8086")
    with pytest.raises(ConfigError) as caught:
        load_settings(CommonSettings)
    message = str(caught.value)
    assert "MQTT_URL" in message and "INFLUX_URL" in message
    assert "s3cret" not in message
    assert "dev:***@" in message
