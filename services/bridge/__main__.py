"""facility-bridge: foreign device messages (LoRaWAN network servers, Shelly, Tasmota,
Zigbee2MQTT, any JSON) -> contract readings on our broker, losing none."""

from __future__ import annotations

import argparse
import sys

from common.runtime import HttpEndpoint, load_program_settings, run_service
from services.bridge.service import BridgeService
from services.bridge.settings import BridgeSettings

PROGRAM = "facility-bridge"


def _settings_help() -> str:
    lines = ["settings (environment variables, also read from .env):"]
    for name, field in BridgeSettings.model_fields.items():
        if name.startswith("bridge_"):
            lines.append(f"  {name.upper():<28} {field.description} [default: {field.default}]")
    lines.append("  plus the shared MQTT_*, DEVICES_FILE, LOG_* variables of the contract")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Subscribe to the sources of BRIDGE_SOURCES_FILE (on our broker or their "
        "own), convert each message to contract readings and publish them on the telemetry "
        "topics; a source message is acknowledged only once our broker acknowledged all it "
        "became. Bad messages become dead letters on P/deadletter/bridge. Stops cleanly on "
        "SIGTERM/SIGINT.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    settings = load_program_settings(BridgeSettings, PROGRAM)
    return run_service(
        PROGRAM,
        lambda: BridgeService(settings),
        HttpEndpoint(
            settings.bridge_http_host,
            settings.bridge_http_port,
            "BRIDGE_HTTP_PORT",
            settings.http_port_file,
        ),
        settings.bridge_shutdown_timeout_s,
        details={"sources_file": str(settings.bridge_sources_file)},
    )


if __name__ == "__main__":
    sys.exit(main())
