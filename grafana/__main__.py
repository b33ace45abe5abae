"""facility-grafana: build dashboards as code; push/verify them on a Grafana server."""

from __future__ import annotations

import argparse
import sys

from common.devices import RegistryError, load_registry
from grafana.build import DASHBOARDS_DIR, drift, write_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facility-grafana", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write grafana/dashboards/*.json from the code")
    build.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    args = parser.parse_args(argv)
    try:
        registry = load_registry("config/devices.yaml")
    except RegistryError as exc:
        print(f"facility-grafana: DEVICES_FILE: {exc}", file=sys.stderr)
        return 2
    if args.command == "build":
        if args.check:
            problems = drift(registry)
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        for path in write_all(registry, DASHBOARDS_DIR):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
