"""facility-ingest settings: INGEST_* variables, durations, one-line errors, --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import ConfigError, load_settings
from services.ingest.settings import IngestSettings, parse_retention_s

ROOT = Path(__file__).resolve().parents[2]


def test_variables_map_to_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_BATCH_SIZE", "250")
    monkeypatch.setenv("INGEST_SHARED_GROUP", "ingesters")
    monkeypatch.setenv("INGEST_RETENTION", "30d")
    settings = load_settings(IngestSettings)
    assert settings.ingest_batch_size == 250
    assert settings.receive_maximum == 750
    assert settings.ingest_shared_group == "ingesters"
    assert settings.retention_s == 30 * 86400


def test_every_ingest_field_is_documented() -> None:
    for name, field in IngestSettings.model_fields.items():
        if name.startswith("ingest_"):
            assert field.description, name


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0), ("inf", 0), ("90m", 5400), ("12h", 43200), ("3600", 3600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_retention_s(text) == seconds


@pytest.mark.parametrize(
    ("var", "value"),
    [("INGEST_BATCH_SIZE", "0"), ("INGEST_RETENTION", "a while"), ("INGEST_SHARED_GROUP", "a/b")],
)
def test_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        load_settings(IngestSettings)


def test_cli_exits_2_with_one_line_error_and_has_help() -> None:
    env = dict(os.environ, INGEST_BATCH_SIZE="-5")
    bad = subprocess.run(
        [sys.executable, "-m", "services.ingest"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "INGEST_BATCH_SIZE" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    helped = subprocess.run(
        [sys.executable, "-m", "services.ingest", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0 and "INGEST_SPOOL_DIR" in helped.stdout


def test_dead_letters_live_beside_the_spool_and_the_future_bound_is_a_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INGEST_SPOOL_DIR", str(tmp_path / "state" / "spool"))
    monkeypatch.setenv("MAX_FUTURE_S", "20m")
    settings = load_settings(IngestSettings)
    assert settings.deadletter_dir == tmp_path / "state" / "deadletters"
    assert settings.max_future_ms == 20 * 60_000
    monkeypatch.setenv("INGEST_DEADLETTER_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("MAX_FUTURE_S")
    settings = load_settings(IngestSettings)
    assert settings.deadletter_dir == tmp_path / "elsewhere"
    assert settings.max_future_ms == 300_000  # the contract's default
    monkeypatch.setenv("MAX_FUTURE_S", "0")
    with pytest.raises(ConfigError, match="MAX_FUTURE_S"):
        load_settings(IngestSettings)
