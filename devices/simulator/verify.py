"""``facility-simulator verify``: after a scenario run, check its expected outcomes against what
the system stored (InfluxDB, InfluxQL over ``/query``) and published (retained MQTT topics).

What a run must have produced is computed by replaying the same scenario, seed and window
in-process (deterministic), so no extra bookkeeping is needed in the run itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from common.influx import InfluxClient, InfluxError
from common.settings import load_or_exit
from common.timestamps import iso_to_ms
from devices.simulator.run import (
    Window,
    anchor_ms,
    resolve_window,
    rfc3339_arg,
    run_scenario,
)
from devices.simulator.scenario import ScenarioError, load_scenario
from devices.simulator.settings import SimulatorSettings
from devices.simulator.verify_checks import (
    Check,
    Expected,
    Observed,
    RetainedStatuses,
    expected_from_replay,
    judge,
    observe,
)

PROG = "facility-simulator verify"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check a scenario's expected outcomes (readings stored, bad messages "
        "dead-lettered, alerts fired and resolved, dispatches) against InfluxDB (INFLUX_URL, "
        "INFLUX_TOKEN, INFLUX_BUCKET, INFLUX_API_VERSION) and the broker (MQTT_URL). "
        "Polls until every check passes or the timeout ends; exit 0 = all passed, 1 = a check "
        "failed, 2 = bad arguments or settings.",
    )
    parser.add_argument("--scenario", default="ci-smoke", help="name in config/scenarios/ or path")
    parser.add_argument(
        "--summary-file",
        type=Path,
        help="the run's JSON summary: its window and seed are used, its counts cross-checked",
    )
    parser.add_argument(
        "--anchor-at",
        type=rfc3339_arg,
        help="the --anchor-at (SIMULATOR_ANCHOR_AT) the run was given, if any",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the checks to pass"
    )
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between attempts")
    parser.add_argument(
        "--ingest-metrics-url",
        help="facility-ingest's /metrics URL: compare its dead-letter counts with the faults",
    )
    return parser


def _window(
    scenario: Any, summary: dict[str, Any] | None, anchor_at: datetime | None
) -> tuple[Window, int | None]:
    if summary is not None:
        start = iso_to_ms(summary["start"])
        return Window(start, iso_to_ms(summary["end"]), float("inf")), summary.get("seed")
    if scenario.start is None:
        raise ScenarioError(
            f"scenario {scenario.name} has no fixed start: pass the run's --summary-file"
        )
    return resolve_window(scenario, now_ms=anchor_ms(anchor_at)), None


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.timeout <= 0 or args.poll <= 0:
        print(f"{PROG}: --timeout and --poll must be greater than 0", file=sys.stderr)
        return 2
    settings = load_or_exit(SimulatorSettings, PROG)
    summary: dict[str, Any] | None = None
    try:
        scenario = load_scenario(args.scenario, settings.simulator_scenario_dir)
        if args.summary_file is not None:
            summary = json.loads(args.summary_file.read_text(encoding="utf-8"))
        window, seed = _window(scenario, summary, args.anchor_at or settings.simulator_anchor_at)
        with tempfile.TemporaryDirectory(prefix="facility-verify-") as tmp:
            replay_file = Path(tmp) / "replay.jsonl"
            replay = run_scenario(
                settings, scenario, window, seed=seed, stop=threading.Event(), output=replay_file
            )
            expected = expected_from_replay(scenario, settings, window, replay, replay_file)
    except (ScenarioError, OSError, ValueError, KeyError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    return _poll(settings, expected, summary, args)


def _poll(
    settings: SimulatorSettings,
    expected: Expected,
    summary: dict[str, Any] | None,
    args: argparse.Namespace,
) -> int:
    reader = InfluxClient.from_settings(settings, timeout_s=30.0)
    retained = RetainedStatuses(settings, expected.scripted_dispatches)
    retained.start()
    deadline = time.monotonic() + args.timeout
    checks: list[Check] = []
    attempts = 0
    try:
        while True:
            attempts += 1
            try:
                observed: Observed | None = observe(
                    reader, expected, retained.snapshot(), args.ingest_metrics_url
                )
                error = None
            except InfluxError as exc:
                observed, error = None, str(exc)
            checks = judge(expected, observed, summary, error)
            if all(c.ok for c in checks) or time.monotonic() >= deadline:
                break
            time.sleep(min(args.poll, max(0.0, deadline - time.monotonic())))
    finally:
        retained.stop()
        reader.close()
    print(render(checks, expected, attempts))
    return 0 if all(c.ok for c in checks) else 1


def render(checks: list[Check], expected: Expected, attempts: int) -> str:
    width = max((len(c.name) for c in checks), default=10)
    lines = [
        f"verify {expected.scenario} ({expected.window_text}), after {attempts} attempt(s):",
        f"{'RESULT':<6}  {'CHECK':<{width}}  DETAIL",
    ]
    lines += [f"{c.result:<6}  {c.name:<{width}}  {c.detail}" for c in checks]
    failed = sum(1 for c in checks if not c.ok)
    # Not "N passed, N failed": CI log readers take that shape for a test runner's verdict.
    lines.append(
        f"verify: {failed} of {len(checks)} checks FAILED (not met before the timeout)"
        if failed
        else f"verify: all {len(checks)} checks OK"
    )
    return "\n".join(lines)
