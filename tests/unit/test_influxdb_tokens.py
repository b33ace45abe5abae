"""deploy/influxdb/create-tokens.sh (the compose stack's `influxdb-init`) and with-token.sh.

InfluxDB 2.x cannot run on this machine (only 1.x is installed), so the script's logic runs
against a fake ``influx`` CLI on PATH that records its arguments and answers the way influx CLI
2.7 does (``bucket list --hide-headers``: a table row starting with the ID; ``auth create/list
--json``: the token objects). The real server is exercised only by the compose e2e workflow.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CREATE_TOKENS = REPO / "deploy" / "influxdb" / "create-tokens.sh"
WITH_TOKEN = REPO / "deploy" / "influxdb" / "with-token.sh"
BUCKET_ID = "0a1b2c3d4e5f6789"

FAKE_INFLUX = """\
import json, os, secrets, sys
from pathlib import Path

state = Path(os.environ["FAKE_INFLUX_STATE"])
known = json.loads(state.read_text()) if state.exists() else []
with open(os.environ["FAKE_INFLUX_LOG"], "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "token": os.environ.get("INFLUX_TOKEN")}) + "\\n")
args = sys.argv[1:]
if args[:2] == ["bucket", "list"]:
    name = args[args.index("--name") + 1]
    if name == os.environ["FAKE_BUCKET"]:
        print(f"{os.environ['FAKE_BUCKET_ID']}\\t{name}\\t8736h0m0s\\t168h0m0s\\t0123\\timplicit")
elif args[:2] == ["auth", "list"]:
    print(json.dumps(known, indent="\\t"))
elif args[:2] == ["auth", "create"]:
    description = args[args.index("--description") + 1]
    token = {"id": f"id{len(known)}", "description": description,
             "token": secrets.token_urlsafe(16) + "==", "status": "active",
             "userName": "admin", "userID": "u1", "permissions": []}
    known.append(token)
    state.write_text(json.dumps(known))
    print(json.dumps(token, indent="\\t"))
else:
    sys.exit(f"fake influx: unexpected {args}")
"""


@pytest.fixture
def fake_influx(tmp_path: Path) -> dict[str, str]:
    """Environment running create-tokens.sh against the fake CLI (token files under tmp)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "influx"
    script.write_text(f"#!{sys.executable}\n{FAKE_INFLUX}")
    script.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "INFLUX_HOST": "http://influxdb:8086",
        "INFLUX_TOKEN": "the-admin-token",
        "INFLUX_USER": "admin",
        "INFLUX_ORG": "facility",
        "INFLUX_BUCKET": "facility",
        "TOKENS_DIR": str(tmp_path / "tokens"),
        "SERVICE_UID": str(os.getuid()),
        "GRAFANA_UID": str(os.getuid()),
        "FAKE_INFLUX_STATE": str(tmp_path / "server.json"),
        "FAKE_INFLUX_LOG": str(tmp_path / "calls.jsonl"),
        "FAKE_BUCKET": "facility",
        "FAKE_BUCKET_ID": BUCKET_ID,
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(CREATE_TOKENS)], env=env, capture_output=True, text=True, timeout=60
    )


def _creates(env: dict[str, str]) -> dict[str, list[str]]:
    """Description -> the permission arguments of every `influx auth create` so far."""
    found = {}
    for line in Path(env["FAKE_INFLUX_LOG"]).read_text().splitlines():
        argv = json.loads(line)["argv"]
        if argv[:2] == ["auth", "create"]:
            description = argv[argv.index("--description") + 1]
            found[description] = [a for a in argv[2:] if a not in ("--json",)]
    return found


def _token(env: dict[str, str], service: str) -> Path:
    return Path(env["TOKENS_DIR"]) / service / "influx_token"


def test_scripts_parse_in_sh_and_bash() -> None:
    for script in (CREATE_TOKENS, WITH_TOKEN):
        for shell in ("sh", "bash"):
            assert shutil.which(shell), shell
            result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
            assert result.returncode == 0, (shell, script.name, result.stderr)


def test_each_service_gets_a_token_scoped_to_write_or_read_the_bucket(
    fake_influx: dict[str, str],
) -> None:
    result = _run(fake_influx)
    assert result.returncode == 0, result.stderr
    org_user = ["--org", "facility", "--user", "admin"]
    assert _creates(fake_influx) == {
        "facility-ingest": [*org_user, "--description", "facility-ingest", "--write-bucket", BUCKET_ID],
        "facility-alerts": [*org_user, "--description", "facility-alerts", "--write-bucket", BUCKET_ID],
        "facility-simulator": [*org_user, "--description", "facility-simulator", "--read-bucket", BUCKET_ID],
        "facility-grafana": [*org_user, "--description", "facility-grafana", "--read-bucket", BUCKET_ID],
    }  # fmt: skip
    server = json.loads(Path(fake_influx["FAKE_INFLUX_STATE"]).read_text())
    by_description = {t["description"]: t["token"] for t in server}
    for service in ("ingest", "alerts", "simulator", "grafana"):
        path = _token(fake_influx, service)
        assert path.read_text() == by_description[f"facility-{service}"]  # no newline
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_uid == os.getuid()
    # The admin token reached the CLI (its environment) and no file.
    calls = [
        json.loads(line) for line in Path(fake_influx["FAKE_INFLUX_LOG"]).read_text().splitlines()
    ]
    assert {c["token"] for c in calls} == {"the-admin-token"}
    files = list(Path(fake_influx["TOKENS_DIR"]).rglob("*"))
    assert not any(f.is_file() and "the-admin-token" in f.read_text() for f in files)


def test_a_second_start_keeps_known_tokens_and_replaces_only_unknown_ones(
    fake_influx: dict[str, str],
) -> None:
    assert _run(fake_influx).returncode == 0
    kept = {s: _token(fake_influx, s).read_text() for s in ("ingest", "alerts", "grafana")}
    Path(fake_influx["FAKE_INFLUX_LOG"]).write_text("")

    assert _run(fake_influx).returncode == 0
    assert _creates(fake_influx) == {}  # every token file is still known to the server

    # The server lost grafana's token (e.g. a fresh influxdb-data volume): only it is replaced.
    state = Path(fake_influx["FAKE_INFLUX_STATE"])
    server = json.loads(state.read_text())
    state.write_text(json.dumps([t for t in server if t["description"] != "facility-grafana"]))
    result = _run(fake_influx)
    assert result.returncode == 0, result.stderr
    assert set(_creates(fake_influx)) == {"facility-grafana"}
    assert _token(fake_influx, "grafana").read_text() != kept["grafana"]
    assert _token(fake_influx, "ingest").read_text() == kept["ingest"]
    assert _token(fake_influx, "alerts").read_text() == kept["alerts"]


def test_a_missing_bucket_fails_without_creating_any_token(fake_influx: dict[str, str]) -> None:
    result = _run({**fake_influx, "INFLUX_BUCKET": "elsewhere"})
    assert result.returncode != 0
    assert "bucket 'elsewhere' not found" in result.stderr
    assert _creates(fake_influx) == {}
    assert not Path(fake_influx["TOKENS_DIR"]).exists()


def test_with_token_exports_the_file_s_token_to_the_program(tmp_path: Path) -> None:
    token = tmp_path / "influx_token"
    token.write_text("read-only-token")
    result = subprocess.run(
        ["sh", str(WITH_TOKEN), "sh", "-c", 'printf "%s|%s" "$INFLUX_TOKEN" "${INFLUX_TOKEN_FILE-}"'],
        env={"PATH": os.environ["PATH"], "INFLUX_TOKEN_FILE": str(token)},
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "read-only-token|"
