"""``threshold``: any numeric field of any kind against a fire and a (lower) clear condition."""

from __future__ import annotations

from collections.abc import Iterable

from common.devices import Registry
from common.payloads import Reading
from services.alerts.config import ThresholdSpec
from services.alerts.rules.base import BaseRule, Signal, Verdict


class ThresholdRule(BaseRule):
    spec: ThresholdSpec

    def __init__(self, spec: ThresholdSpec, registry: Registry | None) -> None:
        super().__init__(spec, registry)
        self.clear = spec.clear or spec.when.negated()

    def observe(self, reading: Reading) -> Iterable[Signal]:
        raw = reading.fields.get(self.spec.field)
        if raw is None:
            return ()
        value = float(raw)
        verdict: Verdict
        if self.spec.when.holds(value):
            verdict = Verdict.FIRE
        elif self.clear.holds(value):
            verdict = Verdict.CLEAR
        else:
            verdict = Verdict.HOLD
        message = f"{self.spec.field} is {value:g} (fires {self.spec.when}, clears {self.clear})"
        return (Signal.about(reading, verdict, value, self.spec.when.value, message),)
