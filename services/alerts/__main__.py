"""``facility-alerts``: rules on the telemetry stream -> alerts, notifications, truck dispatch."""

from __future__ import annotations

import argparse
import sys

from common.devices import RegistryError, load_registry
from common.runtime import HttpEndpoint, StartupError, load_program_settings, run_service
from services.alerts.config import RulesError, load_rules
from services.alerts.service import AlertsService
from services.alerts.settings import AlertsSettings

PROGRAM = "facility-alerts"
SHUTDOWN_TIMEOUT_S = 5.0
"""How long SIGTERM may spend flushing notifiers before leaving the broker."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Rules on the telemetry stream -> alerts, notifications, truck dispatch. "
        "Settings come from the environment (MQTT_*, INFLUX_*, DEVICES_FILE, ALERTS_*).",
    )
    parser.add_argument(
        "--check-rules",
        action="store_true",
        help="validate ALERTS_RULES_FILE and the device registry, print a summary and exit",
    )
    args = parser.parse_args(argv)
    settings = load_program_settings(AlertsSettings, PROGRAM)
    try:
        rules = load_rules(settings.alerts_rules_file)
    except RulesError as exc:
        print(f"{PROGRAM}: invalid setting ALERTS_RULES_FILE: {exc}", file=sys.stderr)
        return 2
    try:
        registry = load_registry(settings.devices_file)
    except RegistryError as exc:
        print(f"{PROGRAM}: invalid setting DEVICES_FILE: {exc}", file=sys.stderr)
        return 2
    if args.check_rules:
        for rule in rules.rules:
            print(f"{rule.name:28} {rule.type:14} {rule.severity}")
        print(f"{len(rules.rules)} rules OK, {len(registry.devices)} devices")
        return 0

    def build() -> AlertsService:
        try:
            return AlertsService(settings, rules, registry)
        except ValueError as exc:
            raise StartupError(f"invalid setting {exc}") from exc

    return run_service(
        PROGRAM,
        build,
        HttpEndpoint(
            settings.alerts_http_host,
            settings.alerts_http_port,
            "ALERTS_HTTP_PORT",
            settings.http_port_file,
        ),
        SHUTDOWN_TIMEOUT_S,
        details={"rules": len(rules.rules), "mqtt": settings.mqtt_host},
    )


if __name__ == "__main__":
    sys.exit(main())
