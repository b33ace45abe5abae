"""``facility-simulator verify``: check a scenario's expected outcomes (placeholder).

The expectations are already machine-readable (``Scenario.expect``, checked in-process by
:mod:`devices.simulator.expectations`); checking them against InfluxDB and the alert topics is
planned with the deployment work.
"""

from __future__ import annotations

import argparse
import sys

from devices.simulator.scenario import ScenarioError, load_scenario


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="facility-simulator verify",
        description="Check a scenario's expected outcomes against InfluxDB and the alert topics.",
    )
    parser.add_argument("--scenario", default="ci-smoke")
    args = parser.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"facility-simulator: {exc}", file=sys.stderr)
        return 2
    for item in scenario.expect:
        print(f"expect {item.type} {item.device}")
    print("facility-simulator verify: checking against InfluxDB is not built yet", file=sys.stderr)
    return 3
