"""`make run`: the whole system on one machine, supervised, with a live terminal view.

Starts, in order: an embedded MQTT broker (amqtt, MQTT 3.1.1) unless ``MQTT_URL`` is set, the
ingest service (InfluxDB when ``INFLUX_URL`` is set and answers, else the line-protocol file
sink under ``data/run``), the alerts service and the simulator's ``demo`` scenario, sped up so
a day passes in minutes. A child that dies is restarted with backoff; one that rejects its
configuration (exit 2) stops the run. Ctrl-C (or SIGTERM) stops everything in reverse order.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from rich.console import Console

from supervisor.plan import make_plan
from supervisor.supervise import Supervisor


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="facility-run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Environment: MQTT_URL (use that broker, MQTT v5 unless MQTT_PROTOCOL=3.1.1), "
        "INFLUX_URL + INFLUX_TOKEN/INFLUX_API_VERSION (store there when it answers), and every "
        "other variable of the programs (see .env.example and docs/operations.md).",
    )
    parser.add_argument(
        "--scenario", default="demo", help="simulator scenario, or 'none' (default demo)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per real second (default: the scenario's; demo: 600, "
        "a day in 4 minutes)",
    )
    parser.add_argument(
        "--data-dir", default="data/run", help="file sink, spool, logs (default data/run)"
    )
    parser.add_argument(
        "--mqtt-port", type=int, default=0, help="embedded broker port (default 1883 if free)"
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="log lines instead of the live view (default when not a terminal)",
    )
    args = parser.parse_args(argv)
    if args.speed is not None and args.speed <= 0:
        parser.error("--speed must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200, soft_wrap=True)  # log lines, not a reflowed screen
    plan = make_plan(args, dict(os.environ))
    supervisor = Supervisor(plan, console, live_view=console.is_terminal and not args.plain)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    return supervisor.run(args.duration)


if __name__ == "__main__":
    sys.exit(main())
