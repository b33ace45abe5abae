"""docker-compose.yml, Dockerfile, .env.example and make-env.sh checked without a Docker engine.

There is no Docker engine here. The compose file is validated three ways: a structural check
of the compose-spec keys we use (always), Debian's ``docker-compose config`` (its bundled
compose-spec JSON schema; when installed), and cross-checks against the programs themselves:
every variable given to a Python service is a field of its settings class and, with the
values ``make env`` produces, loads without error.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
MAKE_ENV = REPO / "scripts" / "make-env.sh"

SETTINGS_CLASSES = {
    "ingest": ("services.ingest.settings", "IngestSettings"),
    "alerts": ("services.alerts.settings", "AlertsSettings"),
    "simulator": ("devices.simulator.settings", "SimulatorSettings"),
    "bridge": ("services.bridge.settings", "BridgeSettings"),
}
EXPECTED_SERVICES = {
    "mosquitto", "influxdb", "influxdb-init", "grafana", "ingest", "alerts", "simulator",
    "bridge",
}  # fmt: skip

# The compose-spec keys this project uses, per level (a typo or an unsupported key fails).
TOP_LEVEL_KEYS = {"services", "volumes", "networks", "secrets", "configs", "name"}
SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "volumes", "ports",
    "depends_on", "healthcheck", "restart", "profiles", "stop_grace_period", "init", "logging",
    "user", "read_only", "tmpfs", "networks", "secrets", "labels", "expose", "container_name",
    "pull_policy",
}  # fmt: skip
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "disable"}
RESTART_POLICIES = {"no", "always", "on-failure", "unless-stopped"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
DURATION = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")
# ($${VAR} is compose's escape: a literal ${VAR} for the container's shell.)
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return dict(load_compose()["services"])


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name] = value
    return values


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} substitution."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if op in (":?", "?") and not value:
            raise AssertionError(f"required variable {name} is empty: {arg}")
        if op in (":-", "-") and not value:
            return arg or ""
        return value

    return INTERPOLATION.sub(one, text)


def settings_class(service: str) -> type[BaseSettings]:
    module_name, class_name = SETTINGS_CLASSES[service]
    module = importlib.import_module(module_name)
    cls: type[BaseSettings] = getattr(module, class_name)
    assert issubclass(cls, BaseSettings)
    return cls


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping (NAME: value)"
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


@pytest.fixture
def generated_env(tmp_path: Path) -> dict[str, str]:
    """The .env that `make env DEMO=1 BRIDGE=1` writes (the optional users' passwords too)."""
    target = tmp_path / ".env"
    subprocess.run(
        [str(MAKE_ENV), "--demo", "--bridge", str(target)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    values = {}
    for line in target.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


# --- structure ---------------------------------------------------------------------------


def test_compose_file_has_the_expected_services_and_only_known_keys() -> None:
    data = load_compose()
    unknown = {k for k in data if k not in TOP_LEVEL_KEYS and not k.startswith("x-")}
    assert not unknown
    assert set(data["services"]) == EXPECTED_SERVICES
    declared_volumes = set(data.get("volumes") or {})
    for name, svc in data["services"].items():
        assert set(svc) <= SERVICE_KEYS, f"{name}: unknown keys {set(svc) - SERVICE_KEYS}"
        assert "image" in svc or "build" in svc, name
        assert svc.get("restart") in RESTART_POLICIES, f"{name}: restart policy"
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in data["services"], f"{name} depends on unknown {dep}"
            assert spec["condition"] in DEPENDS_CONDITIONS
        for mount in svc.get("volumes", []):
            # (A bind mount may name its host path by a variable, e.g. ${MQTT_TLS_DIR:-./...}.)
            source = interpolate(mount, env_example()).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name}: undeclared volume {source}"
        if "stop_grace_period" in svc:
            assert DURATION.fullmatch(svc["stop_grace_period"])
        for entry in ("command", "entrypoint"):
            if entry in svc:
                assert isinstance(svc[entry], list), f"{name}.{entry}: exec form, no shell"
    # Every declared named volume is used.
    mounts = [
        interpolate(m, env_example())
        for svc in data["services"].values()
        for m in svc.get("volumes", [])
    ]
    used = {m.split(":")[0] for m in mounts if not m.startswith((".", "/"))}
    assert used == declared_volumes


def test_every_service_has_a_healthcheck() -> None:
    for name, svc in services().items():
        check = svc.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert set(check) <= HEALTHCHECK_KEYS
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert not check.get("disable")
        for key in ("interval", "timeout", "start_period"):
            assert DURATION.fullmatch(check[key]), f"{name}.healthcheck.{key}"
        assert isinstance(check["retries"], int) and check["retries"] >= 1


def test_python_services_wait_for_healthy_dependencies_and_probe_their_healthz() -> None:
    svcs = services()
    for name in ("ingest", "alerts"):
        deps = svcs[name]["depends_on"]
        assert deps["mosquitto"]["condition"] == "service_healthy"
        assert deps["influxdb"]["condition"] == "service_healthy"
        env = service_environment(svcs[name])
        port = env[f"{name.upper()}_HTTP_PORT"]
        probe = " ".join(svcs[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in probe
        # Bound to all interfaces inside the container so the port mapping reaches it.
        assert env[f"{name.upper()}_HTTP_HOST"] == "0.0.0.0"
    assert svcs["grafana"]["depends_on"]["influxdb"]["condition"] == "service_healthy"
    assert "/api/health" in " ".join(svcs["grafana"]["healthcheck"]["test"])
    assert svcs["influxdb"]["healthcheck"]["test"][1:3] == ["influx", "ping"]


def test_simulator_runs_only_in_the_demo_profile() -> None:
    svcs = services()
    assert svcs["simulator"]["profiles"] == ["demo"]
    assert svcs["bridge"]["profiles"] == ["bridge"]
    profiled = {"simulator", "bridge"}
    assert all("profiles" not in svc for name, svc in svcs.items() if name not in profiled)


def test_images_are_pinned_to_exact_versions() -> None:
    for name, svc in services().items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag, f"{name}: untagged image {image}"
        if image.startswith("facility-monitor:"):
            continue  # our own image, built from the Dockerfile
        assert tag != "latest"
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned to x.y.z"


def test_published_host_ports_do_not_clash() -> None:
    published: dict[str, str] = {}
    env = env_example()
    for name, svc in services().items():
        for mapping in svc.get("ports", []):
            parts = interpolate(mapping, env).split(":")
            host = ":".join(parts[:-1])
            assert host not in published, f"{name} and {published.get(host)} both publish {host}"
            published[host] = name
    assert len(published) >= 5


def test_every_mounted_path_and_referenced_script_exists() -> None:
    for name, svc in services().items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
    mosquitto = services()["mosquitto"]
    config_dir = REPO / "deploy" / "mosquitto"
    for path in (
        *mosquitto["entrypoint"],
        *mosquitto["command"],
        *mosquitto["healthcheck"]["test"],
    ):
        if path.startswith("/mosquitto/config/"):
            assert (config_dir / path.removeprefix("/mosquitto/config/")).is_file(), path
    build = services()["ingest"]["build"]
    assert (REPO / build["context"] / build["dockerfile"]).is_file()


def published_ports(env: Mapping[str, str]) -> dict[str, list[tuple[str, str, str]]]:
    """Per service: (host address, host port, container port) of every published port."""
    result: dict[str, list[tuple[str, str, str]]] = {}
    for name, svc in services().items():
        for mapping in svc.get("ports", []):
            parts = interpolate(mapping, env).split(":")
            assert len(parts) == 3, f"{name}: {mapping} does not name a host address"
            result.setdefault(name, []).append((parts[0], parts[1], parts[2]))
    return result


@pytest.mark.parametrize("source", ["compose defaults", ".env.example"])
def test_published_ports_bind_to_the_host_loopback_by_default(source: str) -> None:
    """Issue 11 point 7: Docker's port rules bypass host firewalls, so nothing is published on
    every interface unless BIND_ADDRESS / MQTT_BIND_ADDRESS / MQTTS_BIND_ADDRESS say so."""
    env = {} if source == "compose defaults" else env_example()
    ports = published_ports(env)
    for name, mappings in ports.items():
        for address, _host, _container in mappings:
            assert address == "127.0.0.1", f"{name} published on {address}"
    assert {container for _, _, container in ports["mosquitto"]} == {"1883", "8883"}
    assert {container for _, _, container in ports["influxdb"]} == {"8086"}
    # The switch: one variable opens InfluxDB and Grafana, others the broker's listeners.
    opened = published_ports({"BIND_ADDRESS": "0.0.0.0", "MQTTS_BIND_ADDRESS": "0.0.0.0"})
    assert {a for a, _, _ in opened["grafana"] + opened["influxdb"]} == {"0.0.0.0"}
    assert dict((c, a) for a, _, c in opened["mosquitto"]) == {
        "1883": "127.0.0.1",
        "8883": "0.0.0.0",
    }


def test_services_log_in_where_their_session_cannot_be_taken_over() -> None:
    """Issue 11 point 1: the broker names a session after its username, so ingest's and alerts'
    client ids are their usernames; the simulator (per-device ids) has a listener of its own."""
    svcs = services()
    for name in ("ingest", "alerts"):
        env = service_environment(svcs[name])
        assert env["MQTT_CLIENT_ID"] == env["MQTT_USERNAME"] == f"svc.{name}"
        assert env.get("MQTT_URL", "mqtt://mosquitto:1883") == "mqtt://mosquitto:1883"
    assert service_environment(svcs["simulator"])["MQTT_URL"] == "mqtt://mosquitto:1884"
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    listeners = re.split(r"(?m)^listener ", conf)[1:]
    by_port = {block.split()[0]: block for block in listeners}
    assert "use_username_as_clientid true" in by_port["1883"]
    assert "passwd-simulator" in by_port["1884"]
    assert "MQTT_INGEST_REPLICA_CREDENTIALS" in service_environment(svcs["mosquitto"])


# --- variables ---------------------------------------------------------------------------


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    documented = env_example()
    lines = COMPOSE.read_text().splitlines()
    used = set(INTERPOLATION.findall("\n".join(x for x in lines if not x.lstrip().startswith("#"))))
    missing = {name for name, _, _ in used} - set(documented)
    assert not missing, f"not in .env.example: {sorted(missing)}"
    # ... and nothing documented is dead (COMPOSE_PROJECT_NAME is read by compose itself).
    unused = set(documented) - {name for name, _, _ in used} - {"COMPOSE_PROJECT_NAME"}
    assert not unused, f"documented but unused: {sorted(unused)}"


def test_every_env_example_variable_has_a_comment() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if not line or line.startswith("#"):
            continue
        # Walk up the block of assignments this line belongs to; it must start with a comment.
        above = index - 1
        while above >= 0 and lines[above] and not lines[above].startswith("#"):
            above -= 1
        assert above >= 0 and lines[above].startswith("#"), f"no comment for {line}"


@pytest.mark.parametrize("service", sorted(SETTINGS_CLASSES))
def test_service_variables_are_fields_of_its_settings_class(service: str) -> None:
    fields = {name.upper() for name in settings_class(service).model_fields}
    env = service_environment(services()[service])
    unknown = set(env) - fields
    assert not unknown, f"{service} is given variables its settings do not read: {unknown}"


@pytest.mark.parametrize("service", sorted(SETTINGS_CLASSES))
def test_service_settings_load_from_the_compose_environment(
    service: str,
    generated_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from common.settings import load_settings

    env = {
        k: interpolate(v, generated_env)
        for k, v in service_environment(services()[service]).items()
    }
    for name in list(os.environ):
        if name.startswith(("MQTT_", "INFLUX_", "INGEST_", "ALERTS_", "SIMULATOR_", "LOG_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "no-secrets"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    settings: Any = load_settings(settings_class(service))
    assert settings.mqtt_host == "mosquitto"
    user, password = settings.mqtt_credentials()
    assert user == f"svc.{service}"
    assert password and password == generated_env[f"MQTT_{service.upper()}_PASSWORD"]
    assert settings.influx_url == "http://influxdb:8086"


def test_mqtt_users_in_compose_exist_in_the_broker_acl() -> None:
    acl = (REPO / "deploy" / "mosquitto" / "acl").read_text()
    acl_users = set(re.findall(r"(?m)^user (\S+)$", acl))
    for name in SETTINGS_CLASSES:
        assert service_environment(services()[name])["MQTT_USERNAME"] in acl_users


# --- make env ----------------------------------------------------------------------------


def test_make_env_fills_every_secret_with_fresh_random_values(tmp_path: Path) -> None:
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    for target in (first, second):
        subprocess.run([str(MAKE_ENV), str(target)], check=True, capture_output=True, timeout=60)
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    secrets_a = dict(
        line.split("=", 1)
        for line in first.read_text().splitlines()
        if re.match(r"^[A-Z_]+(PASSWORD|TOKEN)=", line)
    )
    secrets_b = dict(
        line.split("=", 1)
        for line in second.read_text().splitlines()
        if re.match(r"^[A-Z_]+(PASSWORD|TOKEN)=", line)
    )
    # On request only.
    optional = {"MQTT_SIMULATOR_PASSWORD", "MQTT_OPERATOR_PASSWORD", "MQTT_BRIDGE_PASSWORD"}
    filled = {name for name, value in secrets_a.items() if value}
    assert filled == {k for k in env_example() if k.endswith(("_PASSWORD", "_TOKEN"))} - optional
    assert {secrets_a[name] for name in optional} == {""}
    secrets_a = {name: secrets_a[name] for name in filled}
    for name, value in secrets_a.items():
        assert len(value) >= 32, name
        assert value != secrets_b[name], f"{name} is not random"
    assert len(set(secrets_a.values())) == len(secrets_a)


def test_make_env_makes_the_broker_tls_certificates_and_keeps_supplied_ones(
    tmp_path: Path,
) -> None:
    subprocess.run([str(MAKE_ENV), str(tmp_path / ".env")], check=True, capture_output=True)
    tls = tmp_path / "secrets" / "mqtt-tls"
    assert {p.name for p in tls.iterdir()} == {"ca.crt", "ca.key", "server.crt", "server.key"}
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((tls / key).stat().st_mode) == 0o600
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls / "ca.crt"), str(tls / "server.crt")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    names = subprocess.run(
        ["openssl", "x509", "-in", str(tls / "server.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:mosquitto" in names and "IP Address:127.0.0.1" in names
    # A second .env beside it (or certificates from the operator's own CA) keeps them.
    before = (tls / "server.crt").read_bytes()
    subprocess.run([str(MAKE_ENV), str(tmp_path / "b.env")], check=True, capture_output=True)
    assert (tls / "server.crt").read_bytes() == before


def test_make_env_refuses_to_overwrite_an_existing_env(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("INFLUXDB_ADMIN_TOKEN=keep-me\n")
    result = subprocess.run(
        [str(MAKE_ENV), str(target)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "already exists" in result.stderr
    assert target.read_text() == "INFLUXDB_ADMIN_TOKEN=keep-me\n"


def test_nothing_secret_is_committed() -> None:
    for name, value in env_example().items():
        if name.endswith(("_PASSWORD", "_TOKEN", "_CREDENTIALS")):
            assert value == "", f".env.example must not carry a value for {name}"
    tracked = subprocess.run(
        ["git", "ls-files", ".env", "deploy/mosquitto"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    assert ".env" not in tracked
    assert not any(path.endswith(("passwd", ".pw")) for path in tracked)


# --- Debian's docker-compose (compose-spec JSON schema) ------------------------------------


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        message = "docker-compose not installed (Debian package docker-compose; make test installs it as root)"
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.parametrize("profile", [None, "demo", "bridge"])
def test_docker_compose_config_accepts_the_stack(profile: str | None, tmp_path: Path) -> None:
    binary = docker_compose()
    env_file = tmp_path / ".env"
    subprocess.run([str(MAKE_ENV), str(env_file)], check=True, capture_output=True, timeout=60)
    args = [
        binary,
        "--project-directory",
        str(REPO),
        "-f",
        str(COMPOSE),
        "--env-file",
        str(env_file),
    ]
    if profile:
        args += ["--profile", profile]
    result = subprocess.run(
        [*args, "config", "--services"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    # (Compose 1.29 lists profiled services too; `profiles` is checked structurally above.)
    assert set(result.stdout.split()) == EXPECTED_SERVICES


def test_docker_compose_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    binary = docker_compose()
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())  # secrets still empty
    result = subprocess.run(
        [binary, "--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file", str(env_file), "config", "-q"],
        capture_output=True, text=True, timeout=120, env=clean_env(),
    )  # fmt: skip
    assert result.returncode != 0
    assert "make env" in result.stderr


def clean_env() -> dict[str, str]:
    """The environment without variables that would override the .env file under test."""
    names = set(env_example())
    return {k: v for k, v in os.environ.items() if k not in names}


# --- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_pinned_non_root_and_without_build_tools() -> None:
    text = (REPO / "Dockerfile").read_text()
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1))
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(stages) == 2, "build stage + final stage"
    final = lines[stages[-1] :]
    assert "pip install" not in "\n".join(final), "dependencies come from the build stage"
    assert not re.search(r"\b(gcc|build-essential|apt-get install)\b", "\n".join(final))
    assert any(line.startswith("COPY --from=build") for line in final)
    user = [line for line in final if line.startswith("USER ")]
    assert user and not user[-1].split()[1].startswith(("root", "0"))
    assert "-c constraints.txt" in text
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and ".venv" in ignored and "data" in ignored


def test_grafana_gets_every_variable_its_provisioning_files_use() -> None:
    grafana = services()["grafana"]
    env = service_environment(grafana)
    # NAME_FILE gives NAME: the entrypoint (deploy/influxdb/with-token.sh) exports it.
    assert grafana["entrypoint"][:2] == ["sh", "/facility/with-token.sh"]
    env |= {name.removesuffix("_FILE"): "" for name in env if name.endswith("_FILE")}
    used = set()
    for path in (REPO / "grafana" / "provisioning").rglob("*.y*ml"):
        used |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)\}?", path.read_text()))
    assert used, "provisioning files reference the environment"
    assert used <= set(env), f"not given to grafana: {used - set(env)}"
    # The provider's path is where the dashboards are mounted (folder = directory name).
    provider = yaml.safe_load((REPO / "grafana/provisioning/dashboards/facility.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    targets = [m.split(":")[1] for m in grafana["volumes"] if m.startswith("./grafana/dashboards")]
    assert targets and targets[0].startswith(path + "/")


# --- secrets: scoped InfluxDB tokens, the webhook secret -----------------------------------

TOKEN_USERS = {"ingest", "alerts", "simulator", "grafana"}


def _named_mounts(svc: dict[str, Any]) -> dict[str, str]:
    """Named volume -> its mount (target plus options) in one service."""
    return {
        m.split(":")[0]: m.split(":", 1)[1]
        for m in svc.get("volumes", [])
        if not m.startswith((".", "/"))
    }


def test_only_influxdb_and_its_init_get_the_admin_token() -> None:
    data = load_compose()
    holders = {
        name
        for name, svc in data["services"].items()
        if "INFLUXDB_ADMIN_TOKEN" in " ".join(service_environment(svc).values())
    }
    assert holders == {"influxdb", "influxdb-init"}
    assert "INFLUX_TOKEN" not in data["x-service-env"]
    for name in TOKEN_USERS:
        assert "INFLUX_TOKEN" not in service_environment(data["services"][name]), name


def test_each_service_mounts_only_its_own_scoped_token_read_only() -> None:
    from common.settings import DEFAULT_SECRETS_DIR

    svcs = services()
    for name, svc in svcs.items():
        tokens = {v: m for v, m in _named_mounts(svc).items() if v.startswith("influx-token-")}
        if name == "influxdb-init":
            assert tokens == {f"influx-token-{u}": f"/tokens/{u}" for u in TOKEN_USERS}
            assert service_environment(svc)["TOKENS_DIR"] == "/tokens"
        elif name in TOKEN_USERS:
            assert tokens == {f"influx-token-{name}": f"{DEFAULT_SECRETS_DIR}:ro"}, name
            # The token exists before the service starts (and `up --wait` adopts the one-shot).
            condition = svc["depends_on"]["influxdb-init"]["condition"]
            assert condition == "service_completed_successfully", name
        else:
            assert not tokens, f"{name} mounts {sorted(tokens)}"
    init = svcs["influxdb-init"]
    assert init["restart"] == "no"
    assert init["depends_on"]["influxdb"]["condition"] == "service_healthy"
    assert init["entrypoint"] == ["sh", "/facility/create-tokens.sh"]
    assert "./deploy/influxdb:/facility:ro" in init["volumes"]


def test_grafana_data_source_gets_grafana_s_read_only_token_file() -> None:
    grafana = services()["grafana"]
    env = service_environment(grafana)
    assert env["INFLUX_TOKEN_FILE"] == "/run/secrets/influx_token"
    assert grafana["entrypoint"] == ["sh", "/facility/with-token.sh", "/run.sh"]
    assert "./deploy/influxdb/with-token.sh:/facility/with-token.sh:ro" in grafana["volumes"]
    datasource = (REPO / "grafana/provisioning/datasources/influxdb.yaml").read_text()
    assert "Token ${INFLUX_TOKEN}" in datasource


def test_ingest_does_not_try_to_create_the_bucket_with_its_write_only_token() -> None:
    assert service_environment(services()["ingest"])["INGEST_CREATE_BUCKET"] == "false"


@pytest.mark.parametrize("service", sorted(set(SETTINGS_CLASSES) & TOKEN_USERS))
def test_python_services_read_their_token_from_the_mounted_file(
    service: str,
    generated_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from common.settings import load_settings

    for name in list(os.environ):
        if name.startswith(("MQTT_", "INFLUX_", "INGEST_", "ALERTS_", "SIMULATOR_", "LOG_")):
            monkeypatch.delenv(name)
    for name, value in service_environment(services()[service]).items():
        monkeypatch.setenv(name, interpolate(value, generated_env))
    secrets = tmp_path / "run-secrets"  # stands for the token volume at /run/secrets
    secrets.mkdir()
    (secrets / "influx_token").write_text(f"scoped-{service}-token")
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    monkeypatch.chdir(tmp_path)
    settings: Any = load_settings(settings_class(service))
    assert settings.influx_token.get_secret_value() == f"scoped-{service}-token"


def test_alerts_gets_the_webhook_secret_make_env_generates(
    generated_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from common.settings import load_settings
    from services.alerts.settings import AlertsSettings

    assert env_example()["ALERTS_WEBHOOK_SECRET"] == ""  # nothing secret committed
    secret = generated_env["ALERTS_WEBHOOK_SECRET"]
    assert len(secret) >= 32
    env = service_environment(services()["alerts"])
    assert env["ALERTS_WEBHOOK_SECRET"].startswith("${ALERTS_WEBHOOK_SECRET:?")  # required
    for name in list(os.environ):
        if name.startswith(("MQTT_", "INFLUX_", "ALERTS_", "LOG_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, interpolate(value, generated_env))
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "no-secrets"))
    monkeypatch.chdir(tmp_path)
    settings = load_settings(AlertsSettings)
    assert settings.alerts_webhook_secret is not None
    assert settings.alerts_webhook_secret.get_secret_value() == secret
