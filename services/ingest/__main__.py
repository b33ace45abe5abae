"""facility-ingest: MQTT telemetry -> validated points -> InfluxDB, losing no accepted message."""

from __future__ import annotations

import argparse
import sys

from common.observability import setup_logging
from common.settings import load_or_exit
from services.ingest.service import StartupError, run
from services.ingest.settings import IngestSettings

PROGRAM = "facility-ingest"


def _settings_help() -> str:
    lines = ["settings (environment variables, also read from .env):"]
    for name, field in IngestSettings.model_fields.items():
        if name.startswith("ingest_"):
            default = field.default
            lines.append(f"  {name.upper():<28} {field.description} [default: {default}]")
    lines.append(
        "  plus the shared MQTT_*, INFLUX_*, DEVICES_FILE, LOG_* variables of the contract"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Subscribe to every telemetry and status topic, validate, and write points "
        "to InfluxDB (or a line-protocol file). A message is acknowledged only once stored or "
        "fsynced to the spool. Stops cleanly on SIGTERM/SIGINT.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    settings = load_or_exit(IngestSettings, PROGRAM)
    setup_logging(PROGRAM, settings.log_level, settings.log_format)
    try:
        return run(settings)
    except StartupError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
