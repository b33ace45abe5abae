"""The rule engine: readings in, alert transitions out, driven only by event time."""

from __future__ import annotations

from dataclasses import dataclass

from common.devices import Registry
from common.payloads import Reading, StatusReading
from services.alerts.alert_lifecycle import (
    DEFAULT_MAX_OPEN_ALERTS,
    Alert,
    AlertKey,
    Lifecycle,
    Transition,
)
from services.alerts.collected import CollectedBins
from services.alerts.config import RulesFile, RuleSpec
from services.alerts.rules import BaseRule, build_rule
from services.alerts.rules.base import DEFAULT_HISTORY_MAX_POINTS

TICK_STEP_MS = 1000  # re-judge time-driven rules at most once per second of event time


@dataclass(slots=True)
class EngineStats:
    readings: int = 0
    statuses: int = 0
    signals: int = 0
    superseded: int = 0  # readings older than their bin's collection (judged for liveness only)


class RuleEngine:
    """Routes each reading to the rules that select its device; advances time on the
    watermark (latest reading ``ts``); plain object, no I/O, no clock of its own.

    ``allowed_lateness_ms`` bounds how far behind the watermark a device's readings may still
    arrive (one MQTT connection per device: in a backfill they interleave with skew). Rules'
    time-driven judgements (``tick``: absence) look at ``now - allowed_lateness``, so a device
    is only called silent once its late readings could no longer be on their way.

    Memory is bounded: each rule keeps at most ``history_max_points`` points of history per
    device, and at most ``max_open_alerts`` alerts are open (``Lifecycle``); how many devices
    there are is bounded by the registry and ``UNKNOWN_DEVICES_MAX``.
    """

    def __init__(
        self,
        rules: RulesFile,
        registry: Registry | None = None,
        allowed_lateness_ms: int = 0,
        collected: CollectedBins | None = None,
        *,
        history_max_points: int = DEFAULT_HISTORY_MAX_POINTS,
        max_open_alerts: int = DEFAULT_MAX_OPEN_ALERTS,
    ) -> None:
        self.registry = registry
        self.allowed_lateness_ms = allowed_lateness_ms
        self.rules: list[BaseRule] = [build_rule(spec, registry) for spec in rules.rules]
        for rule in self.rules:
            rule.history_max_points = history_max_points
        self.specs: dict[str, RuleSpec] = {rule.spec.name: rule.spec for rule in self.rules}
        self.lifecycle = Lifecycle(max_open_alerts)
        self.watermark_ms = 0
        self.last_tick_ms = 0
        self.stats = EngineStats()
        self.collected_bins = collected if collected is not None else CollectedBins()
        self._routes: dict[tuple[str, str, str], list[BaseRule]] = {}

    def _rules_for(self, site: str, kind: str, device_id: str) -> list[BaseRule]:
        key = (site, kind, device_id)
        found = self._routes.get(key)
        if found is None:
            found = self._routes[key] = [r for r in self.rules if r.wants(site, kind, device_id)]
        return found

    def handle(self, message: Reading | StatusReading) -> list[Transition]:
        out: list[Transition] = []
        rules = self._rules_for(message.site, message.kind, message.device_id)
        if isinstance(message, Reading):
            self.stats.readings += 1
            if self.collected_bins.supersedes(message.device_id, message.ts_ms):
                # Taken before the bin was emptied and overtaken by the collection: its level
                # is history and must neither re-fire an alert nor feed a forecast. It still
                # shows the device is alive.
                self.stats.superseded += 1
                rules = [rule for rule in rules if rule.judges_liveness]
            for rule in rules:
                for sig in rule.observe(message):
                    self.stats.signals += 1
                    out.extend(self.lifecycle.apply(rule.spec, sig))
            self.watermark_ms = max(self.watermark_ms, message.ts_ms)
        else:
            self.stats.statuses += 1
            for rule in rules:
                for sig in rule.on_status(message):
                    out.extend(self.lifecycle.apply(rule.spec, sig))
        if self.watermark_ms - self.last_tick_ms >= TICK_STEP_MS:
            out.extend(self.tick(self.watermark_ms))
        return out

    def tick(self, now_ms: int) -> list[Transition]:
        """Time moved to ``now_ms`` (the watermark, or the wall clock when live)."""
        if now_ms < self.last_tick_ms:
            return []
        self.last_tick_ms = now_ms
        out: list[Transition] = []
        # Only the rules' own time-driven verdicts wait for late readings; the lifecycle's
        # ``for``/``keep_firing_for``/repeat run on signals already judged (see the docs).
        judged_ms = now_ms - self.allowed_lateness_ms
        for rule in self.rules:
            for sig in rule.tick(judged_ms):
                out.extend(self.lifecycle.apply(rule.spec, sig))
        out.extend(self.lifecycle.advance(now_ms))
        return out

    def collected(self, site: str, device_id: str, ts_ms: int) -> None:
        """The bin was emptied at ``ts_ms`` (event time): older readings of it arriving from
        now on are superseded, and every rule forgets what it learnt about its level."""
        self.collected_bins.record(device_id, ts_ms)
        for rule in self.rules:
            rule.forget(site, device_id)

    def history_points(self) -> int:
        """Points of history the rules keep, over all devices."""
        return sum(rule.history_points() for rule in self.rules)

    def adopt(self, rule_name: str, site: str, kind: str, device_id: str) -> None:
        """A firing alert of ``rule_name`` was restored: its rule takes it over."""
        for rule in self.rules:
            if rule.spec.name == rule_name:
                rule.adopt(site, kind, device_id)

    def dispatch_alerts(self, device_id: str) -> list[tuple[AlertKey, Alert]]:
        """The device's pending or firing alerts of ``dispatch`` rules."""
        return [
            (key, alert)
            for key, alert in self.lifecycle.alerts.items()
            if alert.spec.dispatch and alert.device_id == device_id
        ]

    def resolve(self, key: AlertKey, ts_ms: int, message: str) -> Transition | None:
        """Resolve an alert from outside (a collection) and let its rule forget the device."""
        rule = next((r for r in self.rules if r.spec.name == key[0]), None)
        if rule is not None:
            rule.forget(key[1], key[2])
        return self.lifecycle.resolve(key, ts_ms, message)
