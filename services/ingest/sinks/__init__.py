"""Sinks behind one small interface (``Sink``); ``build_sink`` picks one from the settings."""

from __future__ import annotations

from services.ingest.settings import IngestSettings
from services.ingest.sinks.base import Outcome, Sink, WriteResult
from services.ingest.sinks.file import FileSink
from services.ingest.sinks.influx1 import InfluxV1Sink
from services.ingest.sinks.influx2 import InfluxV2Sink

__all__ = [
    "FileSink",
    "InfluxV1Sink",
    "InfluxV2Sink",
    "Outcome",
    "Sink",
    "WriteResult",
    "build_sink",
]


def build_sink(settings: IngestSettings) -> Sink:
    token = settings.influx_token.get_secret_value() if settings.influx_token else None
    timeout_s = settings.ingest_write_timeout_ms / 1000
    if settings.ingest_sink == "file":
        return FileSink(settings.ingest_file_path)
    if settings.influx_api_version == "1":
        return InfluxV1Sink(settings.influx_url, settings.influx_bucket, token, timeout_s)
    return InfluxV2Sink(
        settings.influx_url, settings.influx_org, settings.influx_bucket, token, timeout_s
    )
