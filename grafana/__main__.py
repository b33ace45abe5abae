"""facility-grafana: build dashboards as code; push/verify them on a Grafana server."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from common.devices import RegistryError, load_registry
from common.observability import setup_logging
from common.settings import CommonSettings, load_or_exit
from grafana.build import DASHBOARDS_DIR, drift, write_all
from grafana.remote import Remote, RemoteError, Report, load_dashboards
from grafana.settings import GrafanaSettings

PROGRAM = "facility-grafana"
log = logging.getLogger(PROGRAM)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=(
            "Dashboards as code for the facility monitor. Settings come from the environment "
            "(GRAFANA_URL, GRAFANA_TOKEN, GRAFANA_FOLDER, INFLUX_URL, INFLUX_TOKEN, "
            "INFLUX_BUCKET, DEVICES_FILE, ...)."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write grafana/dashboards/*.json from the code")
    build.add_argument("--check", action="store_true", help="write nothing; exit 1 on drift")
    build.add_argument("--out", type=Path, default=DASHBOARDS_DIR, help="output directory")
    sub.add_parser("push", help="create/update folder, data source and dashboards on GRAFANA_URL")
    sub.add_parser("verify", help="check server, data source and dashboards on GRAFANA_URL")
    return parser


def _build(args: argparse.Namespace) -> int:
    settings = load_or_exit(CommonSettings, PROGRAM)
    try:
        registry = load_registry(settings.devices_file)
    except (RegistryError, OSError) as exc:
        print(f"{PROGRAM}: DEVICES_FILE: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    if args.check:
        problems = drift(registry, args.out)
        for problem in problems:
            print(f"{PROGRAM}: {problem}; run `facility-grafana build`", file=sys.stderr)
        return 1 if problems else 0
    for path in write_all(registry, args.out):
        print(path)
    return 0


def _remote(command: str) -> int:
    settings = load_or_exit(GrafanaSettings, PROGRAM)
    setup_logging(PROGRAM, settings.log_level, settings.log_format)
    report = Report()
    try:
        dashboards = load_dashboards(settings.grafana_dashboards_dir)
        remote = Remote(settings)
        if command == "push":
            remote.push(dashboards, report)
        else:
            remote.verify(dashboards, report)
    except RemoteError as exc:
        print(f"{PROGRAM}: {command}: {exc}", file=sys.stderr)
        return 1
    for change in report.changes:
        print(f"changed: {change}")
    for uid, version in sorted(report.versions.items()):
        print(f"dashboard {uid}: version {version}")
    for problem in report.problems:
        print(f"{PROGRAM}: {problem}", file=sys.stderr)
    if command == "push" and not report.changes:
        print("nothing to change")
    return 1 if report.problems else 0


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM ends a push between two requests like Ctrl-C does: nothing half-written locally.
    signal.signal(signal.SIGTERM, _stop)
    try:
        if args.command == "build":
            return _build(args)
        return _remote(args.command)
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
