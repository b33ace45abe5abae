"""``facility-alerts``: rules on the telemetry stream -> alerts, notifications, truck dispatch."""

from __future__ import annotations

import argparse
import sys

from common.devices import RegistryError, load_registry
from common.lifecycle import stop_on_signals
from common.observability import ServiceHttpServer, setup_logging
from common.settings import load_or_exit
from services.alerts.config import RulesError, load_rules
from services.alerts.service import AlertsService, log
from services.alerts.settings import AlertsSettings

PROG = "facility-alerts"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Rules on the telemetry stream -> alerts, notifications, truck dispatch. "
        "Settings come from the environment (MQTT_*, INFLUX_*, DEVICES_FILE, ALERTS_*).",
    )
    parser.add_argument(
        "--check-rules",
        action="store_true",
        help="validate ALERTS_RULES_FILE and the device registry, print a summary and exit",
    )
    args = parser.parse_args(argv)
    settings = load_or_exit(AlertsSettings, PROG)
    try:
        rules = load_rules(settings.alerts_rules_file)
    except RulesError as exc:
        print(f"{PROG}: invalid setting ALERTS_RULES_FILE: {exc}", file=sys.stderr)
        return 2
    try:
        registry = load_registry(settings.devices_file)
    except RegistryError as exc:
        print(f"{PROG}: invalid setting DEVICES_FILE: {exc}", file=sys.stderr)
        return 2
    if args.check_rules:
        for rule in rules.rules:
            print(f"{rule.name:28} {rule.type:14} {rule.severity}")
        print(f"{len(rules.rules)} rules OK, {len(registry.devices)} devices")
        return 0
    setup_logging(PROG, settings.log_level, settings.log_format)
    try:
        service = AlertsService(settings, rules, registry)
    except ValueError as exc:
        print(f"{PROG}: invalid setting {exc}", file=sys.stderr)
        return 2
    stop = stop_on_signals(log)
    try:
        http = ServiceHttpServer(
            settings.alerts_http_host,
            settings.alerts_http_port,
            service.metrics.registry,
            service.health,
        ).start()
    except OSError as exc:
        print(f"{PROG}: invalid setting ALERTS_HTTP_PORT: {exc}", file=sys.stderr)
        return 2
    service.start()
    log.info(
        "started",
        extra={"rules": len(rules.rules), "http_port": http.port, "mqtt": settings.mqtt_host},
    )
    stop.wait()
    service.stop()
    http.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
