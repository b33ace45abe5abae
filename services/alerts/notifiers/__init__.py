"""Notifiers: MQTT (always), InfluxDB, webhook, apprise — one ``Notifier`` interface."""
