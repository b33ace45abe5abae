"""Rules on cumulative counters (which may reset to 0): ``rate`` (average rate over a window,
with guards on other fields and local hours) and ``daily_balance`` (net of two counters per
local day, judged when the day is over)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, time

from common.devices import Registry
from common.payloads import Reading
from services.alerts.config import DailyBalanceSpec, RateSpec
from services.alerts.rules.base import BaseRule, CounterTrack, Signal, Verdict, thin

MS_PER_H = 3_600_000


def in_hours(now: time, hours: tuple[time, time]) -> bool:
    start, end = hours
    if start <= end:
        return start <= now < end
    return now >= start or now < end  # a window across midnight, e.g. 22:00-05:00


@dataclass(slots=True)
class _RateState:
    counter: CounterTrack = field(default_factory=CounterTrack)
    points: deque[tuple[int, float]] = field(default_factory=deque)


class RateRule(BaseRule):
    """Fires on the counter's average rate per hour (a Wh counter gives watts)."""

    spec: RateSpec

    def __init__(self, spec: RateSpec, registry: Registry | None) -> None:
        super().__init__(spec, registry)
        self.clear = spec.clear or spec.when.negated()
        self.state: dict[str, _RateState] = {}

    def history_points(self) -> int:
        return sum(len(s.points) for s in self.state.values())

    def observe(self, reading: Reading) -> Iterable[Signal]:
        raw = reading.fields.get(self.spec.counter)
        if raw is None:
            return ()
        state = self.state.setdefault(reading.device_id, _RateState())
        if state.points and reading.ts_ms <= state.points[-1][0]:
            return ()
        total = state.counter.update(float(raw))
        state.points.append((reading.ts_ms, total))
        while len(state.points) > 2 and reading.ts_ms - state.points[1][0] >= self.spec.window_ms:
            state.points.popleft()
        thin(state.points, self.history_max_points)
        t0, v0 = state.points[0]
        span_ms = reading.ts_ms - t0

        def signal(verdict: Verdict, value: float | None, message: str) -> Signal:
            return Signal.about(reading, verdict, value, self.spec.when.value, message)

        if self.spec.hours is not None:
            local = self.local_time(reading.site, reading.ts_ms).time()
            if not in_hours(local, self.spec.hours):
                return (signal(Verdict.CLEAR, None, "outside the rule's hours"),)
        for name, condition in self.spec.require.items():
            other = reading.fields.get(name)
            if other is None or not condition.holds(float(other)):
                return (signal(Verdict.CLEAR, None, f"guard {name} {condition} does not hold"),)
        if span_ms < self.spec.window_ms / 2:
            return (signal(Verdict.HOLD, None, "window not yet covered"),)
        rate = (total - v0) / (span_ms / MS_PER_H)
        message = f"{self.spec.counter} rising {rate:.0f}/h (fires {self.spec.when})"
        if self.spec.when.holds(rate):
            return (signal(Verdict.FIRE, round(rate, 3), message),)
        if self.clear.holds(rate):
            return (signal(Verdict.CLEAR, round(rate, 3), message),)
        return (signal(Verdict.HOLD, round(rate, 3), message),)


@dataclass(slots=True)
class _Day:
    day: date
    complete: bool  # the day's first reading came within an hour of its start
    produced0: float
    consumed0: float
    produced: float
    consumed: float


@dataclass(slots=True)
class _BalanceState:
    produced: CounterTrack = field(default_factory=CounterTrack)
    consumed: CounterTrack = field(default_factory=CounterTrack)
    day: _Day | None = None
    last_ms: int = 0


class DailyBalanceRule(BaseRule):
    """Net energy of a local day = produced - consumed; fires (e.g. net-zero missed) when the
    day ends with ``when`` holding, clears at the end of a day where it does not."""

    spec: DailyBalanceSpec

    def __init__(self, spec: DailyBalanceSpec, registry: Registry | None) -> None:
        super().__init__(spec, registry)
        self.clear = spec.clear or spec.when.negated()
        self.state: dict[str, _BalanceState] = {}

    def observe(self, reading: Reading) -> Iterable[Signal]:
        produced_raw = reading.fields.get(self.spec.produced)
        consumed_raw = reading.fields.get(self.spec.consumed)
        if produced_raw is None or consumed_raw is None:
            return ()
        state = self.state.setdefault(reading.device_id, _BalanceState())
        if reading.ts_ms <= state.last_ms:
            return ()
        state.last_ms = reading.ts_ms
        produced = state.produced.update(float(produced_raw))
        consumed = state.consumed.update(float(consumed_raw))
        local = self.local_time(reading.site, reading.ts_ms)
        day = state.day
        if day is None or local.date() != day.day:
            out: list[Signal] = []
            if day is not None and day.complete and local.date() > day.day:
                # Energy up to the first reading of the next day belongs to the day that
                # ended (a reading at 00:00 closes the day before).
                day.produced, day.consumed = produced, consumed
                out.append(self._judge(reading, day))
            first_hour = local.hour == 0
            state.day = _Day(local.date(), first_hour, produced, consumed, produced, consumed)
            return out
        day.produced, day.consumed = produced, consumed
        return ()

    def _judge(self, reading: Reading, day: _Day) -> Signal:
        net = (day.produced - day.produced0) - (day.consumed - day.consumed0)
        verdict: Verdict
        if self.spec.when.holds(net):
            verdict = Verdict.FIRE
        elif self.clear.holds(net):
            verdict = Verdict.CLEAR
        else:
            verdict = Verdict.HOLD
        message = (
            f"{day.day.isoformat()}: net {net / 1000:+.2f} kWh "
            f"({self.spec.produced} - {self.spec.consumed})"
        )
        return Signal.about(reading, verdict, round(net, 3), self.spec.when.value, message)
