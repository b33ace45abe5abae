"""MQTT, always on: every transition on ``P/alerts/{rule}/{site}/{device}``, the firing alert
retained on ``P/alerts/active/...`` (an empty retained message clears it); dead letters of
the other notifiers on ``P/deadletter/alerts``."""

from __future__ import annotations

from collections.abc import Callable

from common.messages import DeadLetter
from common.topics import Topics
from services.alerts.alert_lifecycle import Transition

PublishFn = Callable[[str, bytes, bool], object]
"""``publish(topic, payload, retain)`` at QoS 1: the service's, which also tracks the PUBACK
(a message is acknowledged only once the alerts it caused are with the broker)."""


class MqttNotifier:
    name = "mqtt"

    def __init__(self, publish: PublishFn, topics: Topics) -> None:
        self.publish = publish
        self.topics = topics

    def notify(self, transition: Transition) -> None:
        event = transition.event
        payload = event.model_dump_json(exclude_none=True).encode()
        self.publish(self.topics.alert(event.rule, event.site, event.device_id), payload, False)
        active = self.topics.alert_active(event.rule, event.site, event.device_id)
        if event.state == "firing":
            self.publish(active, payload, True)
        elif event.state == "resolved" and event.started_at is not None:
            self.publish(active, b"", True)

    def dead_letter(self, letter: DeadLetter) -> None:
        """Publish something alerts could not handle on ``P/deadletter/alerts``."""
        self.publish(
            self.topics.deadletter(letter.program), letter.model_dump_json().encode(), False
        )

    def close(self, timeout: float) -> None:
        return None
