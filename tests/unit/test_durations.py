"""The one duration grammar: every form any config file, setting or flag accepted before."""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel, ValidationError

from common.durations import DurationMs, DurationS, duration_ms, duration_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86_400),  # ingest retention
        ("52w", 52 * 7 * 86_400),
        ("12h", 43_200),
        ("90m", 5_400),
        ("3600", 3_600),  # a numeric string is seconds (env variables, flags)
        ("1.5h", 5_400),  # alerts rules
        ("500ms", 0.5),
        ("90s", 90),
        ("2 m", 120),
        ("1d2h30m", 86_400 + 2 * 3_600 + 30 * 60),  # scenarios
        ("2h30m", 9_000),
        ("1h30m15s", 5_415),
        ("1s500ms", 1.5),
        ("1D", 86_400),  # case does not matter
        (" 15m ", 900),
        ("0", 0),
        ("2.5", 2.5),
    ],
)
def test_every_written_form_reads_as_seconds(text: str, seconds: float) -> None:
    assert duration_s(text) == pytest.approx(seconds)
    assert duration_ms(text) == round(seconds * 1000)


@pytest.mark.parametrize(("number", "seconds"), [(45, 45.0), (0, 0.0), (1.5, 1.5)])
def test_a_plain_number_is_seconds(number: float, seconds: float) -> None:
    assert duration_s(number) == seconds
    assert duration_ms(number) == int(seconds * 1000)


@pytest.mark.parametrize(
    "bad",
    ["", "soon", "-3m", "1h30", "30m1h", "1h1h", "h", "1.h", "1y", True, -1, math.inf, None, []],
)
def test_anything_else_is_refused_with_examples(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        duration_s(bad)


def test_pydantic_fields_take_the_grammar_and_keep_their_unit() -> None:
    class Spec(BaseModel):
        window_ms: DurationMs
        gap_s: DurationS

    spec = Spec.model_validate({"window_ms": "1.5h", "gap_s": "1d2h30m"})
    assert spec.window_ms == 5_400_000
    assert spec.gap_s == 95_400.0
    with pytest.raises(ValidationError, match="'soon' is not a duration"):
        Spec.model_validate({"window_ms": "soon", "gap_s": 1})


def test_seconds_settings_take_the_grammar_and_plain_numbers_stay_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from common.settings import ConfigError, load_settings
    from services.alerts.settings import AlertsSettings
    from services.ingest.settings import IngestSettings

    monkeypatch.setenv("ALERTS_RETRY_MAX_S", "1h30m")
    monkeypatch.setenv("ALERTS_TICK_S", "500ms")
    monkeypatch.setenv("INGEST_SHUTDOWN_TIMEOUT_S", "8")
    alerts = load_settings(AlertsSettings)
    assert (alerts.alerts_retry_max_s, alerts.alerts_tick_s) == (5_400.0, 0.5)
    assert load_settings(IngestSettings).ingest_shutdown_timeout_s == 8.0
    monkeypatch.setenv("ALERTS_TICK_S", "soon")
    with pytest.raises(ConfigError, match="ALERTS_TICK_S: 'soon' is not a duration"):
        load_settings(AlertsSettings)
