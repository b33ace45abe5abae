"""``facility-simulator``: simulated facility devices and collection trucks over MQTT.

``facility-simulator --scenario demo --speed 600`` runs a scenario; ``--devices N --rate R`` is the
load mode for benchmarks; ``facility-simulator verify --scenario ci-smoke`` checks outcomes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from common.devices import RegistryError
from common.durations import duration_s
from common.observability import setup_logging
from common.redact import redact_urls
from common.runtime import stop_on_signals
from common.settings import load_or_exit
from devices.simulator.health import healthcheck_main
from devices.simulator.load import run_load
from devices.simulator.run import (
    anchor_ms,
    finish,
    resolve_window,
    rfc3339_arg,
    run_scenario,
)
from devices.simulator.scenario import ScenarioError, load_scenario
from devices.simulator.settings import SimulatorSettings
from devices.simulator.verify import main as verify_main

PROG = "facility-simulator"
log = logging.getLogger("devices.simulator")


def _duration(value: str) -> float:
    try:
        return duration_s(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Simulated facility devices (energy meter, visitor counters, e-waste bins) "
        "and collection trucks publishing the contract's MQTT topics. Settings come from the "
        "environment (MQTT_URL, DEVICES_FILE, SIMULATOR_*); flags override them.",
        epilog="Subcommands: '%(prog)s verify --scenario NAME' checks a scenario's expected "
        "outcomes; '%(prog)s healthcheck' judges a running scenario's SIMULATOR_HEALTH_FILE.",
    )
    run = parser.add_argument_group("scenario run")
    run.add_argument("--scenario", help="name in config/scenarios/ or a path (SIMULATOR_SCENARIO)")
    run.add_argument("--speed", type=_positive, help="simulated seconds per wall second")
    run.add_argument("--start", type=rfc3339_arg, help="window start, RFC 3339 with offset")
    run.add_argument(
        "--anchor-at",
        type=rfc3339_arg,
        help="place a re-anchored scenario (anchor: latest_week) as if now were this RFC 3339 "
        "time (SIMULATOR_ANCHOR_AT); give verify the same value",
    )
    run.add_argument("--duration", type=_duration, help="window length: seconds or 2h30m, 1d")
    run.add_argument(
        "--backfill", action="store_true", help="publish the window as fast as the broker takes it"
    )
    run.add_argument("--seed", type=int, help="random seed (SIMULATOR_SEED)")
    run.add_argument("--summary-file", type=Path, help="also write the summary as JSON here")
    run.add_argument(
        "--output", type=Path, help="write messages as JSON lines to this file instead of MQTT"
    )
    run.add_argument("--no-fleet", action="store_true", help="do not run collection trucks")
    run.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    load = parser.add_argument_group("load mode (benchmarks)")
    load.add_argument("--devices", type=int, help="synthetic devices; switches to load mode")
    load.add_argument("--rate", type=float, default=0.0, help="msg/s in total, 0 = flat out")
    load.add_argument("--count", type=int, help="stop after this many messages")
    load.add_argument("--load-seconds", type=float, help="stop after this many seconds")
    load.add_argument(
        "--publisher", choices=("fast", "paho"), help="load-mode publisher (default fast)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["verify"]:
        return verify_main(args_in[1:])
    if args_in[:1] == ["healthcheck"]:
        return healthcheck_main(load_or_exit(SimulatorSettings, PROG).simulator_health_file)
    args = build_parser().parse_args(args_in)
    overrides: dict[str, object] = {}
    if args.no_fleet:
        overrides["simulator_fleet"] = False
    if args.no_progress:
        overrides["simulator_progress"] = "off"
    if args.publisher:
        overrides["simulator_load_publisher"] = args.publisher
    settings = load_or_exit(SimulatorSettings, PROG, **overrides)
    setup_logging(PROG, settings.log_level, settings.log_format)
    stop = stop_on_signals(log)
    summary_file = args.summary_file or settings.simulator_summary_file

    if args.devices is not None:
        if args.devices < 1:
            print(f"{PROG}: --devices must be at least 1", file=sys.stderr)
            return 2
        return run_load(settings, args.devices, args.rate, args.count, args.load_seconds, stop)

    name = args.scenario or settings.simulator_scenario
    try:
        scenario = load_scenario(name, settings.simulator_scenario_dir)
        window = resolve_window(
            scenario,
            now_ms=anchor_ms(args.anchor_at or settings.simulator_anchor_at),
            start=args.start,
            duration_s=args.duration,
            speed=args.speed or settings.simulator_speed,
            backfill=True if args.backfill else None,
        )
        summary = run_scenario(
            settings,
            scenario,
            window,
            seed=args.seed if args.seed is not None else settings.simulator_seed,
            stop=stop,
            output=args.output,
        )
    except (ScenarioError, RegistryError, ValueError) as exc:
        print(f"{PROG}: {redact_urls(str(exc))}", file=sys.stderr)
        return 2
    except TimeoutError as exc:
        print(f"{PROG}: {redact_urls(str(exc))}", file=sys.stderr)
        return 1
    finish(summary, summary_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
