"""People's channels through apprise URLs (mail, Slack, Telegram, ...): transitions within a
grouping window become one message, so an incident across 30 bins is one notification. Each
URL has its own delivery queue and outbox, so a failing channel is retried alone and the
others get each message once."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Unpack

import apprise

from common.redact import redact_url
from services.alerts.alert_lifecycle import Transition
from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers.base import DeliveryError, DeliveryQueue, QueueArgs
from services.alerts.notifiers.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)

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


def destination_name(url: str) -> str:
    """``apprise-`` and a hash of the URL: names its queue, metrics and outbox file without
    showing the URL's tokens, and stays the same when the list of URLs is reordered."""
    return "apprise-" + hashlib.sha256(url.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Destination:
    """One apprise URL and the queue that delivers to it alone."""

    name: str
    queue: DeliveryQueue


class Channel:
    """Delivers a grouped message to one apprise URL; raises DeliveryError when it fails."""

    def __init__(self, channel: apprise.Apprise) -> None:
        self.channel = channel

    def __call__(self, payload: object) -> None:
        # A tuple when queued, a list when reloaded from the outbox (JSON).
        assert isinstance(payload, (tuple, list)) and len(payload) == 2
        title, body = str(payload[0]), str(payload[1])
        if not self.channel.notify(title=title, body=body):
            raise DeliveryError("apprise could not notify the URL")


class AppriseNotifier:
    """``outbox`` is where the notifier journals: each URL's queue keeps its own outbox beside
    it (``apprise-<hash>.outbox``), and items left in ``outbox`` itself (by a version with one
    queue for all URLs) are handed to every URL's queue at start."""

    name = "apprise"

    def __init__(
        self,
        urls: Sequence[str],
        group_s: float,
        metrics: AlertsMetrics,
        outbox: Outbox | None = None,
        **queue_args: Unpack[QueueArgs],
    ) -> None:
        channels: dict[str, apprise.Apprise] = {}
        for url in urls:
            channel = apprise.Apprise()
            if not channel.add(url):
                raise ValueError(f"ALERTS_APPRISE_URLS: apprise does not understand {url[:30]!r}")
            name = destination_name(url)
            if name not in channels:  # the same URL twice is one destination
                channels[name] = channel
                log.info("apprise destination", extra={"notifier": name, "url": redact_url(url)})
        self.destinations: list[Destination] = []
        for name, channel in channels.items():
            box = None
            if outbox is not None:
                try:
                    box = Outbox(outbox.path.with_name(f"{name}.outbox"))
                except OutboxError as exc:
                    raise ValueError(f"ALERTS_STATE_DIR: {exc}") from exc
            queue = DeliveryQueue(name, Channel(channel), metrics, outbox=box, **queue_args)
            self.destinations.append(Destination(name, queue))
        if outbox is not None:
            self._adopt(outbox)
        self.group_s = group_s
        self._batch: list[Transition] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def _adopt(self, outbox: Outbox) -> None:
        """Hand what the shared outbox still holds to every destination, then empty it."""
        for _, payload in outbox.pending:
            for destination in self.destinations:
                destination.queue.put(payload)
        outbox.clear()
        outbox.close()

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
            message = summarise(batch)
            for destination in self.destinations:
                destination.queue.put(message)

    def close(self, timeout: float) -> None:
        """The queues have been delivering side by side all along: they share the deadline."""
        with self._lock:
            timer = self._timer
        if timer is not None:
            timer.cancel()
        self.flush()
        deadline = time.monotonic() + timeout
        for destination in self.destinations:
            destination.queue.close(max(0.0, deadline - time.monotonic()))
