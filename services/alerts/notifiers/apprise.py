"""People's channels through apprise URLs (mail, Slack, Telegram, ...): transitions within a
grouping window become one message, so an incident across 30 bins is one notification."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Unpack

import apprise

from services.alerts.alert_lifecycle import Transition
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.base import DeliveryError, DeliveryQueue, QueueArgs
from services.alerts.notifiers.outbox import Outbox

MAX_LINES = 40


def summarise(batch: Sequence[Transition]) -> tuple[str, str]:
    """Title and body of one grouped message."""
    firing = [t for t in batch if t.event.state == "firing"]
    resolved = [t for t in batch if t.event.state == "resolved"]
    by_rule = Counter(t.event.rule for t in firing)
    parts = [f"{n} x {rule}" for rule, n in sorted(by_rule.items())]
    title = f"[facility] {len(firing)} firing" + (f": {', '.join(parts)}" if parts else "")
    if resolved:
        title += f"; {len(resolved)} resolved"
    lines = [
        f"{t.event.severity.upper():8} {t.event.state:8} {t.event.rule} "
        f"{t.event.site}/{t.event.device_id}: {t.event.message}"
        for t in sorted(batch, key=lambda t: (t.event.state, t.event.rule, t.event.device_id))
    ]
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... and {len(lines) - MAX_LINES} more"]
    return title, "\n".join(lines)


class AppriseNotifier:
    name = "apprise"

    def __init__(
        self,
        urls: Sequence[str],
        group_s: float,
        metrics: AlertsMetrics,
        outbox: Outbox | None = None,
        **queue_args: Unpack[QueueArgs],
    ) -> None:
        self.apobj = apprise.Apprise()
        for url in urls:
            if not self.apobj.add(url):
                raise ValueError(f"ALERTS_APPRISE_URLS: apprise does not understand {url[:30]!r}")
        self.group_s = group_s
        self._batch: list[Transition] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.queue = DeliveryQueue(
            self.name,
            self._deliver,
            metrics,
            outbox=outbox,
            **queue_args,
        )

    def _deliver(self, payload: object) -> None:
        # A tuple when queued, a list when reloaded from the outbox (JSON).
        assert isinstance(payload, (tuple, list)) and len(payload) == 2
        title, body = str(payload[0]), str(payload[1])
        if not self.apobj.notify(title=title, body=body):
            raise DeliveryError("apprise could not notify every URL")

    def notify(self, transition: Transition) -> None:
        if not transition.notifies_people:
            return
        with self._lock:
            self._batch.append(transition)
            if self._timer is None:
                self._timer = threading.Timer(self.group_s, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, []
            self._timer = None
        if batch:
            self.queue.put(summarise(batch))

    def close(self, timeout: float) -> None:
        with self._lock:
            timer = self._timer
        if timer is not None:
            timer.cancel()
        self.flush()
        self.queue.close(timeout)
