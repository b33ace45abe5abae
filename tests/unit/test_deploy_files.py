"""Issue 13: the compose stack and the users' CI work the first time, every time.

No Docker engine runs here, so each fault is checked in the files that cause it (compose file,
Dockerfile, workflows, provisioning, scripts) - each test fails on the files before the fix -
and, where a piece can run here, by running it: the shell snippets compose hands to
containers, make-env.sh, the wheel, the console scripts' argument parsers.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_compose import (
    COMPOSE,
    MAKE_ENV,
    REPO,
    clean_env,
    docker_compose,
    interpolate,
    service_environment,
    services,
)

WORKFLOWS = REPO / ".github" / "workflows"
OWN_IMAGE = "facility-monitor:"
PYTHON_SERVICES = ("ingest", "alerts", "simulator", "bridge")


def e2e_steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load((WORKFLOWS / "e2e.yml").read_text())
    steps: list[dict[str, Any]] = workflow["jobs"]["compose"]["steps"]
    return steps


def make_env(directory: Path, *flags: str) -> dict[str, str]:
    """``make-env.sh [flags] DIR/.env``, parsed."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / ".env"
    subprocess.run([str(MAKE_ENV), *flags, str(target)], check=True, capture_output=True)
    lines = target.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


# --- point 1: ci-smoke's window and the CI bucket ----------------------------------------


def test_e2e_plays_and_verifies_ci_smoke_against_one_anchor_in_a_bucket_sized_for_it() -> None:
    from devices.simulator.scenario import WEEK_MS, load_scenario

    runs = "\n".join(step.get("run", "") for step in e2e_steps())
    scenario = load_scenario("ci-smoke", REPO / "config" / "scenarios")
    assert scenario.anchor == "latest_week"
    played = re.search(r"facility-simulator --scenario ci-smoke[^\n]*", runs)
    verified = re.search(r"facility-simulator verify --scenario ci-smoke[^\n]*", runs)
    assert played and '--anchor-at "$ANCHOR_AT"' in played.group(0)
    assert verified and '--anchor-at "$ANCHOR_AT"' in verified.group(0)
    assert 'ANCHOR_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$GITHUB_ENV"' in runs
    retention = re.search(r"INFLUXDB_RETENTION=(\d+)d/", runs)
    assert retention, "e2e sizes the CI bucket"
    oldest_ms = WEEK_MS + int(scenario.duration_s * 1000)
    assert int(retention.group(1)) * 86_400_000 > oldest_ms


# --- point 2: one build of the shared image ----------------------------------------------


def test_the_shared_image_is_built_by_one_service_and_never_pulled_by_the_others() -> None:
    own = {name: svc for name, svc in services().items() if svc["image"].startswith(OWN_IMAGE)}
    assert set(own) == set(PYTHON_SERVICES)
    builders = [name for name, svc in own.items() if "build" in svc]
    assert builders == ["ingest"], "parallel builds of one tag fail: 'image already exists'"
    for name, svc in own.items():
        if name != "ingest":
            assert svc["pull_policy"] == "never", name
    assert "profiles" not in own["ingest"]  # the builder is in every `up`


# --- point 3: demo-only credentials ------------------------------------------------------


def test_make_env_makes_demo_and_operator_passwords_only_on_request(tmp_path: Path) -> None:
    plain = make_env(tmp_path / "a")
    assert plain["MQTT_SIMULATOR_PASSWORD"] == "" and plain["MQTT_OPERATOR_PASSWORD"] == ""
    assert len(plain["MQTT_INGEST_PASSWORD"]) >= 32
    demo = make_env(tmp_path / "b", "--demo", "--operator")
    assert len(demo["MQTT_SIMULATOR_PASSWORD"]) >= 32
    assert len(demo["MQTT_OPERATOR_PASSWORD"]) >= 32
    makefile = (REPO / "Makefile").read_text()
    assert "$(if $(DEMO),--demo)" in makefile and "$(if $(OPERATOR),--operator)" in makefile


def test_compose_without_the_demo_password_is_valid_and_the_broker_gets_no_demo_user(
    tmp_path: Path,
) -> None:
    from tests.integration.deploy_broker import run_entrypoint

    env = make_env(tmp_path)
    for svc in services().values():
        for value in service_environment(svc).values():
            interpolate(value, env)  # no ${VAR:?...} fails: nothing demands the demo user
    mosquitto_env = {
        k: interpolate(v, env) for k, v in service_environment(services()["mosquitto"]).items()
    }
    result = run_entrypoint(tmp_path / "run", mosquitto_env)
    assert result.returncode == 0, result.stderr
    users = (tmp_path / "run" / "passwd").read_text()
    assert "svc.ingest:" in users and "svc.simulator" not in users and "svc.operator" not in users
    assert "svc.bridge" not in users
    assert (tmp_path / "run" / "passwd-simulator").read_text() == ""
    binary = docker_compose()
    checked = subprocess.run(
        [binary, "--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file",
         str(tmp_path / ".env"), "config", "-q"],
        capture_output=True, text=True, timeout=120, env=clean_env(),
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def _entrypoint(service: str) -> list[str]:
    entry = services()[service]["entrypoint"]
    # Compose turns $$ into $ before the container's shell sees it.
    return [part.replace("$$", "$") for part in entry]


@pytest.mark.parametrize(
    ("service", "password_variable", "make_env"),
    [
        ("simulator", "MQTT_SIMULATOR_PASSWORD", "make env DEMO=1"),
        ("bridge", "MQTT_BRIDGE_PASSWORD", "make env BRIDGE=1"),
    ],
)
def test_a_service_without_its_optional_password_says_how_to_make_one(
    service: str, password_variable: str, make_env: str
) -> None:
    entry = _entrypoint(service)
    assert entry[:2] == ["sh", "-c"]
    base = {"PATH": os.environ["PATH"]}
    refused = subprocess.run(
        [*entry, "echo", "started"], env=base | {"MQTT_PASSWORD": ""},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert refused.returncode == 78
    assert f"{password_variable} is empty" in refused.stderr
    assert make_env in refused.stderr
    assert "started" not in refused.stdout
    ran = subprocess.run(
        [*entry, "echo", "started"], env=base | {"MQTT_PASSWORD": "x"},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert ran.stdout == "started\n"


# --- point 4: logs -------------------------------------------------------------------------


def test_every_container_log_is_rotated() -> None:
    for name, svc in services().items():
        logging = svc.get("logging")
        assert logging, f"{name} logs without rotation"
        assert logging["driver"] == "json-file"
        assert re.fullmatch(r"\d+m", logging["options"]["max-size"]), name
        assert int(logging["options"]["max-file"]) >= 2, name


def test_the_broker_saves_its_backlog_every_few_minutes_not_every_ten_seconds() -> None:
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    interval = int(re.search(r"(?m)^autosave_interval (\d+)$", conf).group(1))  # type: ignore[union-attr]
    assert 60 <= interval <= 1800
    assert re.search(r"(?m)^autosave_on_changes false$", conf)


# --- point 5: dashboards in the package ----------------------------------------------------


def test_the_wheel_carries_the_dashboards(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(tmp_path.glob("facility_monitor-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    boards = {p.name for p in (REPO / "grafana" / "dashboards").glob("*.json")}
    assert boards and {f"grafana/dashboards/{b}" for b in boards} <= names
    runs = "\n".join(step.get("run", "") for step in e2e_steps())
    assert "GRAFANA_DASHBOARDS_DIR" not in runs  # the image needs no path to them any more


# --- point 6: the image ------------------------------------------------------------------------


def _dockerfile_final_stage() -> list[str]:
    lines = [
        line.strip()
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    return lines[starts[-1] :]


def test_the_image_smoke_test_runs_every_console_script_from_the_root_directory() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    final = _dockerfile_final_stage()
    smoke = next(i for i, line in enumerate(final) if line.startswith("RUN for program in"))
    workdirs = [line for line in final[:smoke] if line.startswith("WORKDIR ")]
    assert workdirs[-1] == "WORKDIR /", "from /, so only the installed package can be imported"
    users = [line for line in final[:smoke] if line.startswith("USER ")]
    assert users and users[-1] == "USER facility:facility"
    listed = final[smoke].removeprefix("RUN for program in").split(";")[0].split()
    assert set(listed) == set(scripts)
    assert '"$program" --help' in final[smoke + 1]


def test_the_build_backend_is_pinned_where_pip_s_isolated_build_sees_it() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    requires = project["build-system"]["requires"]
    assert len(requires) == 1 and re.fullmatch(r"setuptools==\d+\.\d+\.\d+", requires[0])
    constraints = (REPO / "constraints.txt").read_text().splitlines()
    assert requires[0] in constraints


# --- point 7: Grafana provisioning ---------------------------------------------------------


def test_grafana_mounts_only_the_provisioning_folders_it_replaces() -> None:
    mounts = [m.split(":") for m in services()["grafana"]["volumes"] if m.startswith("./")]
    targets = {target for _, target, *_ in mounts}
    assert "/etc/grafana/provisioning" not in targets, "hides the image's plugins/, alerting/"
    provisioning = {
        source: target for source, target, *_ in mounts if source.startswith("./grafana/prov")
    }
    ours = {p.name for p in (REPO / "grafana" / "provisioning").iterdir() if p.is_dir()}
    assert provisioning == {
        f"./grafana/provisioning/{name}": f"/etc/grafana/provisioning/{name}" for name in ours
    }


def test_dashboards_carry_the_schema_version_of_the_pinned_grafana() -> None:
    import json

    from grafana.build import GRAFANA_SCHEMA_VERSION, GRAFANA_VERSION

    assert services()["grafana"]["image"] == f"grafana/grafana:{GRAFANA_VERSION}"
    for path in (REPO / "grafana" / "dashboards").glob("*.json"):
        assert json.loads(path.read_text())["schemaVersion"] == GRAFANA_SCHEMA_VERSION, path


# --- point 8: the simulator's health -------------------------------------------------------


def test_the_simulator_healthcheck_judges_the_run_s_heartbeat() -> None:
    simulator = services()["simulator"]
    assert simulator["healthcheck"]["test"] == ["CMD", "facility-simulator", "healthcheck"]
    assert service_environment(simulator)["SIMULATOR_HEALTH_FILE"].startswith("/tmp/")


# --- point 9: operator surprises -----------------------------------------------------------


def test_shell_scripts_and_container_files_check_out_with_lf_endings() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.sh", "deploy", "grafana/provisioning", "config"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert any(p.endswith(".sh") for p in tracked)
    attrs = subprocess.run(
        ["git", "check-attr", "eol", "--", *tracked, "new-script.sh"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert attrs and all(line.endswith(": eol: lf") for line in attrs), attrs


def test_python_services_read_the_checkout_s_config_read_only() -> None:
    for name in PYTHON_SERVICES:
        svc = services()[name]
        assert "./config:/app/config:ro" in svc["volumes"], name
        for key, value in service_environment(svc).items():
            if value.startswith("/app/config/"):
                assert (REPO / value.removeprefix("/app/")).exists(), f"{name} {key}"


def test_the_backup_recipe_writes_outside_the_volume_it_backs_up() -> None:
    ops = (REPO / "docs" / "operations.md").read_text()
    recipes = re.findall(r"influx backup (\S+)", ops)
    assert recipes
    influx_volumes = [m.split(":")[1] for m in services()["influxdb"]["volumes"]]
    for target in recipes:
        assert not any(target.startswith(v) for v in influx_volumes), target
    assert "docker compose cp influxdb:" in ops


def test_make_env_warns_when_containers_could_not_read_the_bind_mounts(tmp_path: Path) -> None:
    """A umask-077 checkout: Grafana (uid 472) cannot read the provisioning files."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    for part in ("scripts", ".env.example", "grafana", "config", "deploy"):
        subprocess.run(["cp", "-a", str(REPO / part), str(copy / part)], check=True)
    private = copy / "grafana" / "provisioning" / "datasources" / "influxdb.yaml"
    private.chmod(0o600)
    result = subprocess.run(
        [str(copy / "scripts" / "make-env.sh"), str(copy / ".env")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "grafana/provisioning/datasources/influxdb.yaml" in result.stderr
    assert "chmod -R a+rX" in result.stderr
    private.chmod(0o644)
    quiet = subprocess.run(
        [str(copy / "scripts" / "make-env.sh"), str(copy / "b.env")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "cannot read" not in quiet.stderr


def test_installed_test_servers_are_disabled_not_enabled_and_not_started(tmp_path: Path) -> None:
    """What the script asks of the init system, recorded (packages cannot be installed in a
    test): every unit it installed disabled, nothing started, enabled or stopped, and a
    package it did not install never touched."""
    calls = tmp_path / "calls"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("deb-systemd-helper", "update-rc.d", "systemctl", "service", "invoke-rc.d"):
        stub = stubs / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {shlex.quote(str(calls))}\n')
        stub.chmod(0o755)
    script = REPO / "scripts" / "disable-server-units.sh"
    env = {"PATH": f"{stubs}:{os.environ['PATH']}"}
    subprocess.run(
        [str(script), "mosquitto", "influxdb", "docker-compose"], env=env, check=True,
        capture_output=True, timeout=30,
    )  # fmt: skip
    recorded = calls.read_text().splitlines()
    assert "deb-systemd-helper disable mosquitto.service" in recorded
    assert "deb-systemd-helper disable influxdb.service" in recorded
    assert not [c for c in recorded if re.search(r"\b(start|enable|restart|stop)\b", c)]
    assert not [c for c in recorded if "victoria" in c]
    install = (REPO / "scripts" / "install-servers.sh").read_text()
    assert 'disable-server-units.sh" "${missing[@]}"' in install


def test_a_one_off_ingest_or_alerts_cannot_take_over_the_live_session(tmp_path: Path) -> None:
    """`docker compose run ingest` would log in as svc.ingest and take over the live ingest's
    session (the broker names sessions after users). Each service's command holds a lock in
    its own volume, so a second instance exits 75 before it connects; run here with the real
    flock, the lock moved to a tmp dir and the program replaced by one that waits."""
    for name in ("ingest", "alerts"):
        command = services()[name]["command"]
        lock = f"/var/lib/facility/{name}.lock"
        assert command[0] == "flock" and command[-2:] == [lock, f"facility-{name}"]
        volume_targets = [m.split(":")[1] for m in services()[name]["volumes"]]
        assert "/var/lib/facility" in volume_targets  # the lock lives in the service's volume
        local = [str(tmp_path / f"{name}.lock") if part == lock else part for part in command]
        live = subprocess.Popen(
            [*local[:-1], sys.executable, "-c", "import sys; sys.stdin.read()"],
            stdin=subprocess.PIPE,
        )
        try:
            from tests.helpers import wait_until

            wait_until(lambda: (tmp_path / f"{name}.lock").exists(), 10)
            second = subprocess.run(
                [*local[:-1], "echo", "second instance ran"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert second.returncode == 75, name
            assert "ran" not in second.stdout
        finally:
            assert live.stdin is not None
            live.stdin.close()
            live.wait(10)
        after = subprocess.run(
            [*local[:-1], "echo", "ran"], capture_output=True, text=True, timeout=30, check=True
        )
        assert after.stdout == "ran\n"  # the lock goes with the process


def test_the_docs_say_how_to_run_one_offs_and_replays_and_which_upgrades_were_verified() -> None:
    ops = (REPO / "docs" / "operations.md").read_text()
    for heading in (
        "### One-off commands",
        "### Replaying the demo",
        "### Upgrading the pinned images",
        "### SELinux and file modes",
        "### Demo-only credentials",
    ):
        assert heading in ops, heading


# --- e2e.yml as a fresh runner runs it -----------------------------------------------------

COMPOSE_SUBCOMMANDS = {"config", "build", "up", "run", "ps", "logs", "down"}


def test_every_e2e_command_exists_and_its_arguments_parse() -> None:
    """Each step's commands: scripts exist and are executable, compose subcommands are real,
    and every facility-* invocation parses with the program's own argument parser."""
    from devices.simulator.__main__ import build_parser as simulator_parser
    from devices.simulator.verify import build_parser as verify_parser
    from grafana.__main__ import _parser as grafana_parser

    workflow = yaml.safe_load((WORKFLOWS / "e2e.yml").read_text())
    compose_env = workflow["jobs"]["compose"]["env"]["COMPOSE"]
    assert compose_env.split()[:2] == ["docker", "compose"]
    seen_programs = set()
    for step in e2e_steps():
        if "uses" in step:
            assert step["uses"].startswith("actions/checkout@v"), step
            continue
        text = step["run"].replace("\\\n", " ")
        for script in re.findall(r"\./scripts/[\w.-]+", text):
            assert os.access(REPO / script, os.X_OK), script
        for sub in re.findall(r"(?:\$COMPOSE|docker compose) (\w+)", text):
            assert sub in COMPOSE_SUBCOMMANDS, sub
        for program, rest in re.findall(r"(?<![\w=-])(facility-[a-z]+) ([^\n;|&]*)", text):
            args = shlex.split(rest.replace('"$ANCHOR_AT"', "2026-12-04T10:00:00Z"))
            seen_programs.add(program)
            if program == "facility-simulator" and args[:1] == ["verify"]:
                verify_parser().parse_args(args[1:])
            elif program == "facility-simulator":
                simulator_parser().parse_args(args)
            elif program == "facility-grafana":
                grafana_parser().parse_args(args)
            else:
                pytest.fail(f"unknown program {program}")
    assert seen_programs == {"facility-simulator", "facility-grafana"}
    assert (REPO / "scripts" / "make-env.sh").read_text().count("--demo") >= 1


# --- the bridge (docker compose --profile bridge) ----------------------------------------


def test_the_bridge_runs_in_its_own_profile_on_the_shared_image_after_a_healthy_broker() -> None:
    svcs = services()
    bridge, ingest = svcs["bridge"], svcs["ingest"]
    assert bridge["profiles"] == ["bridge"]
    assert bridge["image"] == ingest["image"] and "build" not in bridge
    assert bridge["pull_policy"] == "never"
    assert bridge["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    assert bridge["logging"] == ingest["logging"]
    assert bridge["command"] == ["facility-bridge"]
    env = service_environment(bridge)
    assert env["MQTT_USERNAME"] == env["MQTT_CLIENT_ID"] == "svc.bridge"
    assert env["MQTT_PASSWORD"] == "${MQTT_BRIDGE_PASSWORD:-}"  # optional: made on request
    assert env["BRIDGE_SOURCES_FILE"] == "/app/config/sources.yaml"
    assert "MQTT_BRIDGE_PASSWORD" in service_environment(svcs["mosquitto"])
    # Its source brokers' passwords: a folder of its own at SECRETS_DIR, read-only.
    assert "${BRIDGE_SECRETS_DIR:-./secrets/bridge}:/run/secrets:ro" in bridge["volumes"]


def test_the_bridge_healthcheck_probes_the_healthz_its_settings_serve() -> None:
    from services.bridge.settings import BridgeSettings

    bridge = services()["bridge"]
    env = service_environment(bridge)
    fields = BridgeSettings.model_fields
    assert fields["bridge_http_port"].default == 9103
    port = env["BRIDGE_HTTP_PORT"]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(bridge["healthcheck"]["test"])
    # Its default host is the loopback; the published port needs every interface.
    assert fields["bridge_http_host"].default == "127.0.0.1"
    assert env["BRIDGE_HTTP_HOST"] == "0.0.0.0"
    assert bridge["ports"] == [f"127.0.0.1:${{BRIDGE_METRICS_HOST_PORT:-{port}}}:{port}"]


def test_make_env_makes_the_bridge_password_only_on_request(tmp_path: Path) -> None:
    plain = make_env(tmp_path / "a")
    assert plain["MQTT_BRIDGE_PASSWORD"] == ""
    assert not (tmp_path / "a" / "secrets" / "bridge").exists()
    asked = make_env(tmp_path / "b", "--bridge")
    assert len(asked["MQTT_BRIDGE_PASSWORD"]) >= 32
    assert asked["MQTT_SIMULATOR_PASSWORD"] == "" and asked["MQTT_OPERATOR_PASSWORD"] == ""
    folder = tmp_path / "b" / "secrets" / "bridge"
    assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o711
    assert "$(if $(BRIDGE),--bridge)" in (REPO / "Makefile").read_text()
