"""Sinks behind one small interface (``Sink``); ``build_sink`` picks one from the settings."""

from __future__ import annotations

from common.influx import InfluxClient
from services.ingest.settings import IngestSettings
from services.ingest.sinks.base import Outcome, Sink, WriteResult
from services.ingest.sinks.file import FileSink
from services.ingest.sinks.influx import InfluxSink

__all__ = [
    "FileSink",
    "InfluxSink",
    "Outcome",
    "Sink",
    "WriteResult",
    "build_sink",
]


def build_sink(settings: IngestSettings) -> Sink:
    if settings.ingest_sink == "file":
        return FileSink(settings.ingest_file_path)
    return InfluxSink(
        InfluxClient.from_settings(
            settings,
            timeout_s=settings.ingest_write_timeout_ms / 1000,
            connect_timeout_s=settings.ingest_connect_timeout_ms / 1000,
            probe_timeout_s=settings.ingest_probe_timeout_ms / 1000,
        )
    )
