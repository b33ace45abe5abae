"""Rule types, one module each; ``build_rule`` is the one registry line per type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from common.devices import Registry
from services.alerts.config import AnyRuleSpec
from services.alerts.rules.absence import AbsenceRule
from services.alerts.rules.base import BaseRule, Rule, Signal, Verdict
from services.alerts.rules.counter import DailyBalanceRule, RateRule
from services.alerts.rules.forecast import ForecastRule
from services.alerts.rules.occupancy import OccupancyRule
from services.alerts.rules.threshold import ThresholdRule

__all__ = ["RULE_CLASSES", "BaseRule", "Rule", "Signal", "Verdict", "build_rule"]

RULE_CLASSES: Final[dict[str, Callable[[Any, Registry | None], BaseRule]]] = {
    "threshold": ThresholdRule,
    "absence": AbsenceRule,
    "forecast": ForecastRule,
    "rate": RateRule,
    "daily_balance": DailyBalanceRule,
    "occupancy": OccupancyRule,
}


def build_rule(spec: AnyRuleSpec, registry: Registry | None) -> BaseRule:
    return RULE_CLASSES[spec.type](spec, registry)
