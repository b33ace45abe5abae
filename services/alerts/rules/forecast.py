"""``forecast``: fit a bin's fill rate (Theil-Sen, robust to outliers) on the points since its
last collection and fire when the predicted time to full is under ``within``."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import median

from common.devices import Registry
from common.payloads import Reading
from services.alerts.config import ForecastSpec
from services.alerts.rules.base import BaseRule, Signal, Verdict, thin

MAX_FIT_POINTS = 48  # Theil-Sen is quadratic; an even subsample keeps a fit well under 1 ms
MS_PER_H = 3_600_000
MIN_FIT_INTERVAL_MS = 60_000  # a forecast in hours gains nothing from refitting more often


def theil_sen(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """Median pairwise slope (per ms) and the median intercept at the last point's time."""
    if len(points) > MAX_FIT_POINTS:
        step = (len(points) - 1) / (MAX_FIT_POINTS - 1)
        points = [points[round(i * step)] for i in range(MAX_FIT_POINTS)]
    slopes = [
        (y2 - y1) / (t2 - t1)
        for i, (t1, y1) in enumerate(points)
        for t2, y2 in points[i + 1 :]
        if t2 > t1
    ]
    slope = median(slopes) if slopes else 0.0
    t_last = points[-1][0]
    level = median(y - slope * (t - t_last) for t, y in points)
    return slope, level


@dataclass(slots=True)
class _History:
    points: deque[tuple[int, float]] = field(default_factory=deque)
    # A big fall is held back one reading: a collection if the next reading stays low,
    # a sensor glitch (single drop-off) if it comes back.
    suspect: tuple[int, float] | None = None
    fitted_ms: int = 0


class ForecastRule(BaseRule):
    spec: ForecastSpec

    def __init__(self, spec: ForecastSpec, registry: Registry | None) -> None:
        super().__init__(spec, registry)
        self.clear_within_ms = spec.clear_within_ms or int(spec.within_ms * 1.5)
        self.history: dict[str, _History] = {}

    def forget(self, site: str, device_id: str) -> None:
        self.history.pop(device_id, None)

    def history_points(self) -> int:
        return sum(len(h.points) for h in self.history.values())

    def observe(self, reading: Reading) -> Iterable[Signal]:
        raw = reading.fields.get(self.spec.field)
        if raw is None:
            return ()
        y = float(raw)
        hist = self.history.setdefault(reading.device_id, _History())
        points = hist.points
        if points and reading.ts_ms <= points[-1][0]:
            return ()  # late or duplicate: the fit is over event time
        collected = False
        if hist.suspect is not None:
            last_y = points[-1][1] if points else y
            if y < last_y - self.spec.reset_drop / 2:
                points.clear()  # stayed low: it was a collection
                points.append(hist.suspect)
                collected = True
            hist.suspect = None
        elif points and y < points[-1][1] - self.spec.reset_drop:
            hist.suspect = (reading.ts_ms, y)
            return ()
        points.append((reading.ts_ms, y))
        while points and reading.ts_ms - points[0][0] > self.spec.window_ms:
            points.popleft()
        thin(points, self.history_max_points)
        if not collected and reading.ts_ms - hist.fitted_ms < MIN_FIT_INTERVAL_MS:
            return ()
        hist.fitted_ms = reading.ts_ms
        return (self._judge(reading, points, collected),)

    def _judge(self, reading: Reading, points: deque[tuple[int, float]], collected: bool) -> Signal:
        within_h = self.spec.within_ms / MS_PER_H

        def signal(verdict: Verdict, value: float | None, message: str) -> Signal:
            return Signal.about(reading, verdict, value, within_h, message)

        if collected:
            return signal(Verdict.CLEAR, None, "collected: fill fell, history restarted")
        span = points[-1][0] - points[0][0]
        if len(points) < self.spec.min_points or span < self.spec.min_span_ms:
            return signal(Verdict.HOLD, None, "not enough history to forecast")
        slope, level = theil_sen(list(points))
        per_h = slope * MS_PER_H
        if level >= self.spec.full_at:
            tte_ms = 0.0
        elif slope <= 0:
            tte_ms = math.inf
        else:
            tte_ms = (self.spec.full_at - level) / slope
        tte_h = tte_ms / MS_PER_H
        message = (
            f"predicted {self.spec.full_at:g} % in {tte_h:.1f} h "
            f"({self.spec.field} {level:.0f} %, {per_h:+.2f} %/h)"
        )
        value = round(tte_h, 3) if math.isfinite(tte_h) else None
        if tte_ms < self.spec.within_ms:
            return signal(Verdict.FIRE, value, message)
        if tte_ms > self.clear_within_ms:
            return signal(Verdict.CLEAR, value, message)
        return signal(Verdict.HOLD, value, message)
