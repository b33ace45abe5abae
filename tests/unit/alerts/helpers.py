"""Small builders for the alert engine's unit tests: readings at exact event times, the
one-rule ``bin_full`` rules file, an ``AlertsCore`` on the real device registry."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from common.devices import Registry, load_registry
from common.payloads import Reading, StatusReading
from common.topics import Topics
from services.alerts.alert_lifecycle import Transition
from services.alerts.config import RulesFile, parse_rules
from services.alerts.core import AlertsCore, CoreSettings
from services.alerts.rule_engine import RuleEngine

ROOT = Path(__file__).resolve().parents[3]
T0 = int(datetime(2025, 6, 2, 0, 0, tzinfo=UTC).timestamp() * 1000)  # 09:00 in Seoul
MIN = 60_000
HOUR = 60 * MIN
TOPICS = Topics("facility")
NONCE = "0123abcd"


def registry() -> Registry:
    return load_registry(ROOT / "config" / "devices.yaml")


def rules(text: str) -> RulesFile:
    return parse_rules(text, "test.yaml")


def bin_full_rules(*options: str) -> str:
    """The one-rule rules file: ``bin_full`` fires when an ewaste bin's fill_pct is >= 90;
    ``options`` are more lines of that rule, e.g. ``'clear: "< 60"'`` or ``"for: 2m"``."""
    rule = (
        "name: bin_full",
        "type: threshold",
        "select: {kind: ewaste_bin}",
        "field: fill_pct",
        'when: ">= 90"',
        *options,
    )
    return "\nrules:\n  - " + "\n    ".join(rule) + "\n"


def alerts_core(text: str, settings: CoreSettings) -> AlertsCore:
    """An ``AlertsCore`` of the rules ``text`` on the real registry, topics and sync nonce."""
    return AlertsCore(rules(text), registry(), TOPICS, settings, NONCE)


def engine(text: str, with_registry: bool = False) -> RuleEngine:
    return RuleEngine(rules(text), registry() if with_registry else None)


def bin_reading(device: str, ts_ms: int, fill: float, **extra: float) -> Reading:
    fields: dict[str, float | int | bool] = {"fill_pct": fill, "weight_kg": fill * 3}
    fields.update(extra)
    return Reading("ewaste", "ewaste_bin", device, ts_ms, None, fields)


def meter(ts_ms: int, **fields: float) -> Reading:
    return Reading("nzc", "energy_meter", "nzc-meter-1", ts_ms, None, dict(fields))


def gate(device: str, ts_ms: int, entries: int, exits: int) -> Reading:
    fields: dict[str, float | int | bool] = {"entries_total": entries, "exits_total": exits}
    return Reading("uac", "visitor_counter", device, ts_ms, None, fields)


def status(device: str, ts_ms: int, online: bool) -> StatusReading:
    return StatusReading("ewaste", "ewaste_bin", device, ts_ms, online)


def states(transitions: list[Transition]) -> list[str]:
    return [t.event.state for t in transitions]
