"""The `make run` supervisor's plan and its console script, without starting anything."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

from supervisor.__main__ import parse_args
from supervisor.child import ChildState
from supervisor.plan import make_plan

REPO = Path(__file__).resolve().parents[2]


def test_every_console_script_names_a_callable_main() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["facility-run"] == "supervisor.__main__:main"
    for target in scripts.values():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


def test_plan_with_an_outside_broker_and_no_influx_uses_the_file_sink(tmp_path: Path) -> None:
    args = parse_args(["--data-dir", str(tmp_path), "--speed", "600"])
    plan = make_plan(args, {"MQTT_URL": "mqtt://broker.example:1884"})
    assert [c.name for c in plan.children] == ["ingest", "alerts", "simulator"]
    assert not plan.embedded_broker
    assert plan.sink == "file"
    ingest = plan.children[0]
    assert ingest.env["INGEST_FILE_PATH"] == str(tmp_path / "points.lp")
    assert plan.children[2].argv[-2:] == ["--speed", "600"]
    assert all(c.state is ChildState.STOPPED for c in plan.children)


def test_plan_without_a_broker_starts_the_embedded_one_first(tmp_path: Path) -> None:
    args = parse_args(["--data-dir", str(tmp_path), "--scenario", "none", "--mqtt-port", "18830"])
    plan = make_plan(args, {})
    assert [c.name for c in plan.children] == ["broker", "ingest", "alerts"]
    assert plan.children[0].argv[1:3] == ["-m", "supervisor.broker"]
    assert plan.mqtt_url == "mqtt://127.0.0.1:18830"
    assert plan.children[1].env["MQTT_PROTOCOL"] == "3.1.1"
