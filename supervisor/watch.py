"""The console's own MQTT subscriber: feeds every published reading, alert and dispatch into a
``Scene`` (QoS 0, clean session: the console shows what happens while it looks, it never holds
messages for the services)."""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as mqtt

from common.mqtt import Message, MqttLink
from common.settings import CommonSettings
from common.topics import Topics
from supervisor.scene import Scene

# Per process: two `make run`s on one broker must not take each other's connection.
CLIENT_ID = f"facility-run-view-{os.getpid()}"


def settings_from(environ: Mapping[str, str]) -> CommonSettings:
    """The children's broker settings (MQTT_* of their environment), without reading .env."""
    names = CommonSettings.model_fields
    values: dict[str, Any] = {
        key.lower(): value
        for key, value in environ.items()
        if key.startswith("MQTT_") and key.lower() in names and key != "MQTT_CLIENT_ID"
    }
    return CommonSettings.model_validate(values)


class Watcher:
    """Subscribes on every (re)connect; ``snapshot()`` is a consistent copy for drawing."""

    def __init__(self, settings: CommonSettings) -> None:
        self._lock = threading.Lock()
        self._scene = Scene(Topics(settings.mqtt_topic_prefix))
        self.link = MqttLink(settings, CLIENT_ID)
        self.link.add_on_connect(self._subscribe)
        self.link.set_message_handler(self._on_message)

    def _subscribe(self, client: mqtt.Client, _session_present: bool) -> None:
        for topic in self._scene.subscriptions():
            client.subscribe(topic, qos=0)

    def _on_message(self, message: Message) -> None:
        with self._lock:
            self._scene.feed(message.topic, bytes(message.payload))

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    def snapshot(self) -> Scene:
        with self._lock:
            return copy.deepcopy(self._scene)
