"""`facility-grafana push` and `verify` against a loopback server speaking Grafana's API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from grafana.__main__ import main
from tests.integration.fake_grafana import TOKEN, FakeGrafana

ROOT = Path(__file__).resolve().parents[2]
BOARD_COUNT = len(list((ROOT / "grafana" / "dashboards").glob("*.json")))


@pytest.fixture
def grafana(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGrafana]:
    with FakeGrafana() as server:
        monkeypatch.setenv("GRAFANA_URL", server.url)
        monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
        monkeypatch.setenv("INFLUX_URL", "http://influxdb:8086")
        monkeypatch.setenv("INFLUX_TOKEN", "influx-secret")
        monkeypatch.setenv("INFLUX_BUCKET", "facility")
        monkeypatch.setenv("LOG_FORMAT", "console")
        yield server


def test_push_creates_folder_datasource_and_every_dashboard(grafana: FakeGrafana) -> None:
    assert main(["push"]) == 0
    state = grafana.state
    assert state.folders["facility-monitor"]["title"] == "Facility Monitor"
    source = state.datasources["facility-influxdb"]
    assert source["type"] == "influxdb"
    assert source["url"] == "http://influxdb:8086"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert state.secrets["facility-influxdb"]["httpHeaderValue1"] == "Token influx-secret"
    assert len(state.dashboards) == BOARD_COUNT == 5
    for saved in state.dashboards.values():
        assert saved["meta"]["folderUid"] == "facility-monitor"


def test_second_push_changes_nothing(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["push"]) == 0
    writes_after_first = len(grafana.state.writes())
    assert writes_after_first == 2 + BOARD_COUNT  # folder, data source, dashboards
    capsys.readouterr()
    assert main(["push"]) == 0
    assert len(grafana.state.writes()) == writes_after_first
    assert "nothing to change" in capsys.readouterr().out
    assert all(d["dashboard"]["version"] == 1 for d in grafana.state.dashboards.values())


def test_push_updates_only_a_dashboard_edited_on_the_server(grafana: FakeGrafana) -> None:
    assert main(["push"]) == 0
    edited = grafana.state.dashboards["facility-ewaste-collection"]["dashboard"]
    edited["title"] = "someone clicked save"
    writes = len(grafana.state.writes())
    assert main(["push"]) == 0
    new_writes = grafana.state.writes()[writes:]
    assert [(w.method, w.path) for w in new_writes] == [("POST", "/api/dashboards/db")]
    assert new_writes[0].body["dashboard"]["uid"] == "facility-ewaste-collection"
    assert edited is not grafana.state.dashboards["facility-ewaste-collection"]["dashboard"]
    assert grafana.state.dashboards["facility-ewaste-collection"]["dashboard"]["version"] == 2


def test_verify_passes_after_push_and_reports_versions(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["push"]) == 0
    capsys.readouterr()
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "dashboard facility-nzc-energy: version 1" in out
    assert not grafana.state.writes()[2 + BOARD_COUNT :]  # verify never writes


def test_verify_fails_on_missing_drifted_dashboard_or_unhealthy_datasource(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify"]) == 1
    assert "data source facility-influxdb missing" in capsys.readouterr().err
    assert main(["push"]) == 0
    del grafana.state.dashboards["facility-uac-visitors"]
    grafana.state.dashboards["facility-alerts-dispatch"]["dashboard"]["panels"] = []
    grafana.state.datasource_healthy = False
    capsys.readouterr()
    assert main(["verify"]) == 1
    err = capsys.readouterr().err
    assert "dashboard facility-uac-visitors missing" in err
    assert "dashboard facility-alerts-dispatch differs from the code" in err
    assert "data source unhealthy" in err


def test_wrong_token_is_a_one_line_error(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", "wrong")
    assert main(["push"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "401" in err or "Unauthorized" in err
    assert not grafana.state.writes()


# -- issue 13 point 5: dashboards loaded from provisioning files (the compose stack) ---------


def _provision_all(grafana: FakeGrafana) -> None:
    import json

    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        grafana.provision(json.loads(path.read_text()), path.name, "Facility Monitor")


def test_verify_of_file_provisioned_dashboards_passes_without_grafana_dashboards_dir(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """From any directory (as in the image), the dashboards come from the package."""
    monkeypatch.delenv("GRAFANA_DASHBOARDS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["push"]) == 0  # folder + data source; then Grafana holds the boards from files
    _provision_all(grafana)
    assert main(["verify"]) == 0


def test_push_and_verify_advise_editing_the_files_of_a_provisioned_dashboard(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    _provision_all(grafana)
    grafana.state.dashboards["facility-nzc-energy"]["dashboard"]["title"] = "old file"
    capsys.readouterr()
    assert main(["push"]) == 1
    pushed = capsys.readouterr().err
    assert "facility-nzc-energy differs from the code" in pushed
    assert "provisioned from files on this server (nzc-energy.json)" in pushed
    assert "run push" not in pushed
    # No save was attempted: Grafana refuses them for provisioned dashboards.
    assert not [r for r in grafana.state.writes() if r.path == "/api/dashboards/db"]
    assert main(["verify"]) == 1
    verified = capsys.readouterr().err
    assert "push cannot change it" in verified and "run push" not in verified
