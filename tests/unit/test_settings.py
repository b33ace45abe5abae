"""Shared settings: defaults, environment, .env, secrets dir, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.settings import CommonSettings, ConfigError, load_or_exit, load_settings


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "no-secrets"))
    for name in list(CommonSettings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_match_the_contract() -> None:
    s = load_settings(CommonSettings)
    assert s.mqtt_url == "mqtt://localhost:1883"
    assert s.mqtt_topic_prefix == "facility"
    assert s.influx_url == "http://localhost:8086"
    assert s.influx_api_version == "2"
    assert (s.influx_org, s.influx_bucket) == ("facility", "facility")
    assert str(s.devices_file) == "config/devices.yaml"
    assert (s.log_level, s.log_format) == ("INFO", "json")


def test_url_credentials_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_URL", "mqtts://dev%40x:p%3Ass@broker.example:8884")
    s = load_settings(CommonSettings)
    assert (s.mqtt_host, s.mqtt_port, s.mqtt_tls) == ("broker.example", 8884, True)
    assert s.mqtt_credentials() == ("dev@x", "p:ss")
    monkeypatch.setenv("MQTT_USERNAME", "ingest")
    monkeypatch.setenv("MQTT_PASSWORD", "secret")
    assert load_settings(CommonSettings).mqtt_credentials() == ("ingest", "secret")


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MQTT_TOPIC_PREFIX=city/gm\nLOG_FORMAT=console\n")
    s = load_settings(CommonSettings)
    assert (s.mqtt_topic_prefix, s.log_format) == ("city/gm", "console")


def test_secrets_directory_supplies_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "influx_token").write_text("tok-123")
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    s = load_settings(CommonSettings)
    assert s.influx_token is not None and s.influx_token.get_secret_value() == "tok-123"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MQTT_URL", "http://broker:1883"),
        ("MQTT_URL", "mqtt://broker:notaport"),
        ("INFLUX_URL", "localhost:8086"),
        ("INFLUX_API_VERSION", "3"),
        ("MQTT_TOPIC_PREFIX", "a/+/b"),
        ("LOG_FORMAT", "xml"),
        ("MQTT_KEEPALIVE_S", "zero"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        load_settings(CommonSettings)


def test_entry_point_helper_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFLUX_API_VERSION", "9")
    with pytest.raises(SystemExit) as exit_info:
        load_or_exit(CommonSettings, "facility-test")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "INFLUX_API_VERSION" in err


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_KEEPALIVE_S", "1")
    monkeypatch.setenv("MQTT_PASSWORD", "hunter2")
    with pytest.raises(ConfigError) as info:
        load_settings(CommonSettings)
    assert "hunter2" not in str(info.value)
