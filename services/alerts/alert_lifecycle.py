"""Alert lifecycle: one alert per (rule, site, device), ``pending -> firing -> resolved``, with
``for``, hysteresis (via the rule's verdicts), ``keep_firing_for`` and repeat, in event time."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.messages import AlertEvent, AlertState
from common.timestamps import iso_to_ms, ms_to_iso
from services.alerts.config import RuleSpec
from services.alerts.rules import Signal, Verdict

AlertKey = tuple[str, str, str]
"""``(rule, site, device_id)``."""

DEFAULT_MAX_OPEN_ALERTS = 10_000
"""Pending and firing alerts held at once (``ALERTS_MAX_OPEN_ALERTS``)."""


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert changed state (or repeats); ``event`` is what gets published."""

    event: AlertEvent
    spec: RuleSpec
    repeat: bool = False

    @property
    def key(self) -> AlertKey:
        return self.event.rule, self.event.site, self.event.device_id

    @property
    def notifies_people(self) -> bool:
        """Firing, or resolved after having fired (a pending that fizzled is not news)."""
        return self.event.state == "firing" or (
            self.event.state == "resolved" and self.event.started_at is not None
        )


@dataclass(slots=True)
class Alert:
    spec: RuleSpec
    site: str
    device_id: str
    kind: str | None
    state: AlertState
    since_ms: int  # pending since, or firing since
    value: float | None
    threshold: float | None
    message: str
    last_verdict: Verdict = Verdict.FIRE
    last_sent_ms: int = 0
    clear_since_ms: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


class Lifecycle:
    """Holds every pending/firing alert; returns the transitions a verdict or time causes.

    At most ``max_open`` alerts are open at once: a new one beyond that is refused (not
    opened, not published), counted per rule in ``refused`` for the caller to count and log
    (a count, not a list: a flood of refusals must not become the memory it was saved), and
    opens at a later ``fire`` verdict once others have resolved."""

    def __init__(self, max_open: int = DEFAULT_MAX_OPEN_ALERTS) -> None:
        self.alerts: dict[AlertKey, Alert] = {}
        self.max_open = max_open
        self.refused: dict[str, int] = {}
        """Alerts refused for the bound per rule since the caller last took them."""
        self.last_refused: AlertKey | None = None

    def _refuse(self, key: AlertKey) -> None:
        self.refused[key[0]] = self.refused.get(key[0], 0) + 1
        self.last_refused = key

    def take_refused(self) -> dict[str, int]:
        """Refusals per rule since the last call (``last_refused`` names the latest)."""
        refused, self.refused = self.refused, {}
        return refused

    def firing(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state == "firing"]

    def pending(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state == "pending"]

    def get(self, key: AlertKey) -> Alert | None:
        return self.alerts.get(key)

    def _event(self, alert: Alert, state: AlertState, ts_ms: int) -> AlertEvent:
        return AlertEvent(
            rule=alert.spec.name,
            severity=alert.spec.severity,
            site=alert.site,
            device_id=alert.device_id,
            kind=alert.kind,
            state=state,
            value=alert.value,
            threshold=alert.threshold,
            message=alert.message,
            ts=ms_to_iso(ts_ms),
            started_at=ms_to_iso(alert.since_ms) if alert.state == "firing" else None,
            labels=dict(alert.labels),
        )

    def _fire(self, alert: Alert, ts_ms: int) -> Transition:
        alert.state = "firing"
        alert.since_ms = ts_ms
        alert.last_sent_ms = ts_ms
        alert.clear_since_ms = None
        return Transition(self._event(alert, "firing", ts_ms), alert.spec)

    def _resolve(self, key: AlertKey, ts_ms: int, message: str | None = None) -> Transition:
        alert = self.alerts.pop(key)
        if message:
            alert.message = message
        return Transition(self._event(alert, "resolved", ts_ms), alert.spec)

    def apply(self, spec: RuleSpec, sig: Signal) -> list[Transition]:
        key = (spec.name, sig.site, sig.device_id)
        alert = self.alerts.get(key)
        if alert is None:
            if sig.verdict != Verdict.FIRE:
                return []
            if len(self.alerts) >= self.max_open:
                self._refuse(key)
                return []
            alert = Alert(
                spec,
                sig.site,
                sig.device_id,
                sig.kind,
                "pending",
                sig.ts_ms,
                sig.value,
                sig.threshold,
                sig.message,
            )
            self.alerts[key] = alert
            if spec.for_ms <= 0:
                return [self._fire(alert, sig.ts_ms)]
            return [Transition(self._event(alert, "pending", sig.ts_ms), spec)]
        if sig.ts_ms < alert.since_ms:
            return []  # older than what we already judged (a late message)
        alert.last_verdict = sig.verdict
        if sig.verdict == Verdict.FIRE or alert.state == "pending":
            alert.value, alert.message = sig.value, sig.message
            alert.threshold = sig.threshold
        if alert.state == "pending":
            if sig.verdict != Verdict.FIRE:
                # ``for`` means the condition held all along; it did not.
                return [
                    self._resolve(
                        key, sig.ts_ms, f"did not hold for the 'for' period: {sig.message}"
                    )
                ]
            return self.advance_one(key, alert, sig.ts_ms)
        # firing
        if sig.verdict == Verdict.FIRE:
            alert.clear_since_ms = None
        elif sig.verdict == Verdict.CLEAR:
            if alert.clear_since_ms is None:
                alert.clear_since_ms = sig.ts_ms
            alert.value, alert.message = sig.value, sig.message
        else:
            alert.clear_since_ms = None
        return self.advance_one(key, alert, sig.ts_ms)

    def advance_one(self, key: AlertKey, alert: Alert, now_ms: int) -> list[Transition]:
        spec = alert.spec
        if alert.state == "pending":
            if alert.last_verdict == Verdict.FIRE and now_ms - alert.since_ms >= spec.for_ms:
                return [self._fire(alert, now_ms)]
            return []
        if alert.clear_since_ms is not None:
            if now_ms - alert.clear_since_ms >= spec.keep_firing_for_ms:
                return [self._resolve(key, now_ms)]
            return []
        if spec.repeat_ms > 0 and now_ms - alert.last_sent_ms >= spec.repeat_ms:
            alert.last_sent_ms = now_ms
            return [Transition(self._event(alert, "firing", now_ms), spec, repeat=True)]
        return []

    def advance(self, now_ms: int) -> list[Transition]:
        """Time passed (the watermark moved): promote pending, expire keep_firing_for, repeat."""
        out: list[Transition] = []
        for key, alert in list(self.alerts.items()):
            out.extend(self.advance_one(key, alert, now_ms))
        return out

    def resolve(self, key: AlertKey, ts_ms: int, message: str) -> Transition | None:
        """Resolve from outside (e.g. the bin was collected); None if not active."""
        if key not in self.alerts:
            return None
        return self._resolve(key, ts_ms, message)

    def restore(self, spec: RuleSpec, event: AlertEvent) -> bool:
        """Take back a firing alert retained on ``P/alerts/active/...`` (restart); False if
        refused for the bound (then it is in ``refused``)."""
        ts_ms = iso_to_ms(event.ts)
        since = iso_to_ms(event.started_at) if event.started_at else ts_ms
        key = (spec.name, event.site, event.device_id)
        if key not in self.alerts and len(self.alerts) >= self.max_open:
            self._refuse(key)
            return False
        self.alerts[key] = Alert(
            spec,
            event.site,
            event.device_id,
            event.kind,
            "firing",
            since,
            event.value,
            event.threshold,
            event.message,
            last_sent_ms=ts_ms,
            labels=dict(event.labels),
        )
        return True
