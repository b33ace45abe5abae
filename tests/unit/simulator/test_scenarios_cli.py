"""Scenario files, the simulated clock and the command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from common.durations import duration_s
from devices.simulator.clock import NoWait, ScaledClock, SkewBound
from devices.simulator.run import resolve_window
from devices.simulator.scenario import ScenarioError, load_scenario
from tests.unit.simulator.support import REPO, SCENARIOS


@pytest.mark.parametrize("name", ["demo", "ci-smoke", "stress"])
def test_shipped_scenarios_validate(name: str) -> None:
    sc = load_scenario(name, SCENARIOS)
    assert sc.name == name
    assert sc.duration_s > 0


def test_ci_smoke_writes_down_its_expected_outcomes_and_faults() -> None:
    sc = load_scenario("ci-smoke", SCENARIOS)
    assert {e.type for e in sc.expect} >= {
        "bin_fill_above", "occupancy_above_capacity", "grid_import_after_sunset", "device_silent",
    }  # fmt: skip
    assert sc.start is not None and sc.backfill
    assert all(spec.count > 0 and spec.rate == 0 for spec in sc.faults.values())


def test_scenario_errors_name_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nduration_s: 1h\nfaults:\n  malformed_jsn: {count: 1}\n")
    with pytest.raises(ScenarioError, match=r"faults\.malformed_jsn"):
        load_scenario(str(bad))
    bad.write_text("name: bad\nevents:\n  - {type: group_visit, at: 1h, sizee: 3}\n")
    with pytest.raises(ScenarioError, match=r"events\.0\.sizee: unknown key"):
        load_scenario(str(bad))
    bad.write_text("name: bad\nduration_s: soon\n")
    with pytest.raises(ScenarioError, match="duration_s"):
        load_scenario(str(bad))


def test_durations_read_like_people_write_them() -> None:
    assert duration_s("2h30m") == 9000
    assert duration_s("1d") == 86400
    assert duration_s(45) == 45
    with pytest.raises(ValueError):
        duration_s("-3m")


def test_fast_runs_without_a_start_replay_the_window_that_ends_now() -> None:
    sc = load_scenario("demo", SCENARIOS)
    now = 1_750_000_000_123
    window = resolve_window(sc, now_ms=now, speed=600)
    assert window.end_ms <= now and now - window.end_ms < 1000
    assert window.end_ms - window.start_ms == 86_400_000
    live = resolve_window(sc, now_ms=now, speed=1)
    assert live.start_ms <= now and now - live.start_ms < 1000
    assert resolve_window(sc, now_ms=now, backfill=True).speed == math.inf


def test_scaled_clock_never_lets_a_timestamp_run_ahead_of_the_wall_clock() -> None:
    wall = [1000.0]
    clock = ScaledClock(start_ms=990_000, speed=100, wall=lambda: wall[0])
    assert clock.wall_target(995_000) == 1000.05  # 5 s simulated at 100x
    assert clock.wall_target(1_010_000) == 1010.0  # past "now": real time
    wall[0] = 1000.05
    assert clock.wait_until(995_000, threading.Event())
    assert abs(clock.sim_now() - 995_000) <= 1  # float seconds


def test_skew_bound_waits_for_the_broker_once_per_simulated_step() -> None:
    # Each barrier must fall between the last action before a step boundary and the first
    # after it, so everything stamped before the boundary is acknowledged first.
    log: list[str] = []
    pacer = SkewBound(NoWait(0), lambda: log.append("barrier"), step_ms=60_000)
    for at in (0, 30_000, 59_999, 60_000, 61_000, 200_000, 200_500, 239_999, 240_000):
        assert pacer.wait_until(at, threading.Event())
        log.append(str(at))
    assert log == [
        "0", "30000", "59999", "barrier", "60000", "61000",
        "barrier", "200000", "200500", "239999", "barrier", "240000",
    ]  # fmt: skip
    assert pacer.sim_now() == 240_000


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devices.simulator", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )  # fmt: skip


def test_cli_help_and_bad_settings_exit_with_one_line_naming_the_variable() -> None:
    assert "--scenario" in _cli("--help").stdout
    bad = _cli("--scenario", "ci-smoke", env={"SIMULATOR_SPEED": "-4"})
    assert bad.returncode == 2
    assert "SIMULATOR_SPEED" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    missing = _cli("--scenario", "no-such-scenario")
    assert missing.returncode == 2 and "no-such-scenario" in missing.stderr


def test_cli_output_file_is_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out, summary = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
        done = _cli("--scenario", "ci-smoke", "--duration", "2h", "--output", str(out),
                    "--summary-file", str(summary))  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs.append((out.read_bytes(), json.loads(summary.read_text())))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1]["messages_total"] > 500
    assert runs[0][1]["faults"] == runs[1][1]["faults"]
