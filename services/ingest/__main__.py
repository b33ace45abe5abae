"""facility-ingest: MQTT telemetry -> validated points -> InfluxDB, losing no accepted message."""

from __future__ import annotations

import argparse
import sys

from common.runtime import HttpEndpoint, load_program_settings, run_service
from services.ingest import deadletters_cli
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings

PROGRAM = "facility-ingest"


def _settings_help() -> str:
    lines = ["settings (environment variables, also read from .env):"]
    for name, field in IngestSettings.model_fields.items():
        if name.startswith("ingest_"):
            default = field.default
            lines.append(f"  {name.upper():<28} {field.description} [default: {default}]")
    lines.append(
        "  plus the shared MQTT_*, INFLUX_*, DEVICES_FILE, UNKNOWN_DEVICES*, MAX_FUTURE_S, LOG_* "
        "variables of the contract"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Subscribe to every telemetry and status topic, validate, and write points "
        "to InfluxDB (or a line-protocol file). A message is acknowledged only once stored or "
        "fsynced to the spool. Stops cleanly on SIGTERM/SIGINT. Without a command it runs the "
        "service; `deadletters list|redrive` looks at and re-drives what it rejected.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{deadletters}")
    deadletters_cli.add_parser(commands)
    args = parser.parse_args(argv)
    settings = load_program_settings(IngestSettings, PROGRAM)
    if args.command == "deadletters":
        return deadletters_cli.run(args, settings)
    return run_service(
        PROGRAM,
        lambda: IngestService(settings),
        HttpEndpoint(
            settings.ingest_http_host,
            settings.ingest_http_port,
            "INGEST_HTTP_PORT",
            settings.http_port_file,
        ),
        settings.ingest_shutdown_timeout_s,
        failure=IngestService.failure,
    )


if __name__ == "__main__":
    sys.exit(main())
