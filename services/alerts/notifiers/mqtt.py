"""MQTT, always on: every transition on ``P/alerts/{rule}/{site}/{device}``, the firing alert
retained on ``P/alerts/active/...`` (an empty retained message clears it); dead letters of
the other notifiers on ``P/deadletter/alerts``."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from common.messages import DeadLetter
from common.topics import Topics
from services.alerts.alert_lifecycle import Transition


class MqttNotifier:
    name = "mqtt"

    def __init__(self, client: mqtt.Client, topics: Topics) -> None:
        self.client = client
        self.topics = topics

    def notify(self, transition: Transition) -> None:
        event = transition.event
        payload = event.model_dump_json(exclude_none=True).encode()
        self.client.publish(
            self.topics.alert(event.rule, event.site, event.device_id), payload, qos=1
        )
        active = self.topics.alert_active(event.rule, event.site, event.device_id)
        if event.state == "firing":
            self.client.publish(active, payload, qos=1, retain=True)
        elif event.state == "resolved" and event.started_at is not None:
            self.client.publish(active, b"", qos=1, retain=True)

    def dead_letter(self, letter: DeadLetter) -> None:
        """Publish something alerts could not handle on ``P/deadletter/alerts``."""
        self.client.publish(
            self.topics.deadletter(letter.program), letter.model_dump_json().encode(), qos=1
        )

    def close(self, timeout: float) -> None:
        return None
