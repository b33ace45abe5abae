"""The users' CI (.github/workflows) does what the README promises; checked as data here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def commands(workflow: dict[str, Any]) -> list[str]:
    return [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]


def test_test_workflow_lints_and_runs_make_test_on_pushes_and_pull_requests() -> None:
    workflow = load("test.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    runs = "\n".join(commands(workflow))
    assert "./scripts/install-servers.sh" in runs
    assert "make lint" in runs
    assert "make test" in runs
    job = next(iter(workflow["jobs"].values()))
    assert "bookworm" in job["container"]["image"]
    assert job["env"]["CI"] == "true"


def test_e2e_workflow_brings_up_the_stack_plays_ci_smoke_and_verifies() -> None:
    workflow = load("e2e.yml")
    steps = next(iter(workflow["jobs"].values()))["steps"]
    runs = [step.get("run", "") for step in steps]
    joined = "\n".join(runs)
    order = [
        "./scripts/make-env.sh",
        "build",
        "up --detach --wait",
        "facility-simulator --scenario ci-smoke",
        "facility-simulator verify --scenario ci-smoke",
        "facility-grafana verify",
        "$COMPOSE up --detach --wait",  # then the demo profile ($COMPOSE has --profile demo)
    ]
    positions = [joined.find(marker) for marker in order]
    assert all(p >= 0 for p in positions), dict(zip(order, positions, strict=True))
    assert positions == sorted(positions)
    assert "--profile demo" in workflow["jobs"]["compose"]["env"]["COMPOSE"]
    logs = [step for step in steps if "logs" in step.get("run", "")]
    assert logs and logs[0]["if"] == "failure()"
    teardown = steps[-1]
    assert teardown["if"] == "always()" and "down --volumes" in teardown["run"]
