"""Structure of the generated dashboards and provisioning: what Grafana needs to load them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from common.devices import load_registry
from grafana.__main__ import main
from grafana.build import build_all, drift
from grafana.influxql import DATASOURCE_UID, InfluxQLQuery, register

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
PATHS = sorted(DASHBOARD_DIR.glob("*.json"))
BUILTIN_VARIABLES = {
    "timeFilter",
    "__interval",
    "col",
    "tag_device_id",
    "tag_zone",
    "tag_residential_type",
    "tag_severity",
}


def _boards() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in PATHS:
        yield path.stem, json.loads(path.read_text())


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _targets(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in _panels(board):
        yield from panel.get("targets", [])
    for annotation in board["annotations"]["list"]:
        yield annotation["target"]


BOARDS = dict(_boards())
IDS = list(BOARDS)


def test_committed_json_is_what_the_code_builds() -> None:
    registry = load_registry(ROOT / "config" / "devices.yaml")
    assert drift(registry) == [], "run `facility-grafana build` and commit grafana/dashboards"
    assert set(build_all(registry)) == {p.name for p in PATHS}


def test_the_five_dashboards_of_the_issue_exist() -> None:
    titles = {b["title"] for b in BOARDS.values()}
    assert len(titles) == 5
    assert any("Net Zero Energy Cafe" in t for t in titles)
    assert any("Upcycle Art Center" in t for t in titles)
    assert {"E-waste collection", "Alerts & dispatch", "Pipeline health"} <= titles
    assert len({b["uid"] for b in BOARDS.values()}) == 5


@pytest.mark.parametrize("name", IDS)
def test_panel_ids_are_unique(name: str) -> None:
    ids = [p["id"] for p in _panels(BOARDS[name])]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", IDS)
def test_every_query_uses_the_provisioned_datasource(name: str) -> None:
    board = BOARDS[name]
    for target in _targets(board):
        assert target["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
        assert target["rawQuery"] is True and target["query"].strip()
    for panel in _panels(board):
        if panel.get("targets"):
            assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE_UID


@pytest.mark.parametrize("name", IDS)
def test_variables_used_are_defined_and_defined_ones_used(name: str) -> None:
    board = BOARDS[name]
    defined = {v["name"] for v in board["templating"]["list"]}
    text = json.dumps(
        [t["query"] for t in _targets(board)]
        + [[p.get("title", ""), p.get("description", "")] for p in _panels(board)]
    )
    used = set(re.findall(r"\$\{?(\w+)", text))
    assert used - BUILTIN_VARIABLES <= defined, used - BUILTIN_VARIABLES - defined
    assert defined <= used, f"unused variables {defined - used}"


@pytest.mark.parametrize("name", IDS)
def test_every_panel_has_unit_description_and_thresholds(name: str) -> None:
    for panel in _panels(BOARDS[name]):
        if panel["type"] == "row":
            continue
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), panel["title"]
        assert defaults.get("thresholds", {}).get("steps"), panel["title"]
        assert len(panel.get("description", "")) > 20, panel["title"]
        assert panel.get("targets"), panel["title"]


@pytest.mark.parametrize("name", IDS)
def test_time_range_and_alert_annotation(name: str) -> None:
    board = BOARDS[name]
    for target in _targets(board):
        query = target["query"]
        assert "$timeFilter" in query or "now() - " in query, query
    names = [a["name"] for a in board["annotations"]["list"]]
    assert "Alerts" in names
    alerts = next(a for a in board["annotations"]["list"] if a["name"] == "Alerts")
    assert 'FROM "alert"' in alerts["target"]["query"]
    assert alerts["target"]["textColumn"] == "message"


def test_counters_become_energy_without_reset_spikes() -> None:
    queries = [t["query"] for t in _targets(BOARDS["nzc-energy"])]
    counter_queries = [q for q in queries if "_wh" in q]
    assert counter_queries
    for query in counter_queries:
        assert "NON_NEGATIVE_DIFFERENCE" in query or "NON_NEGATIVE_DERIVATIVE" in query


def test_ewaste_kg_panels_sum_collection_points_not_raw_weights() -> None:
    """Issue 15: the headline kg come from the small ``collection`` series; DIFFERENCE over a
    year of 5-minute weights took minutes."""
    panels = {p["title"]: p for p in _panels(BOARDS["ewaste-collection"])}
    kg_panels = (
        "Recycled this year vs 541 t",
        "Collected in range",
        "Weight collected per day by housing type",
        "Collected by housing type",
    )
    for title in kg_panels:
        (target,) = panels[title]["targets"]
        assert 'SUM("kg")' in target["query"] and 'FROM "collection"' in target["query"], title
    assert not any("DIFFERENCE" in t["query"] for t in _targets(BOARDS["ewaste-collection"]))


@pytest.mark.parametrize("name", IDS)
def test_json_round_trips_through_the_sdk_model(name: str) -> None:
    register()
    board = BOARDS[name]
    model = Dashboard.from_json(board)
    again = json.loads(json.dumps(model, cls=JSONEncoder))
    assert again == board
    for panel in model.panels or []:
        for target in getattr(panel, "targets", None) or []:
            assert isinstance(target, InfluxQLQuery)


def test_datasource_provisioning_matches_the_dashboards() -> None:
    path = ROOT / "grafana" / "provisioning" / "datasources" / "influxdb.yaml"
    source = yaml.safe_load(path.read_text())["datasources"][0]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "influxdb"
    assert source["url"] == "${INFLUX_URL}"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["dbName"] == "${INFLUX_BUCKET}"
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUX_TOKEN}"


def test_dashboard_provider_uses_folders_from_files() -> None:
    path = ROOT / "grafana" / "provisioning" / "dashboards" / "facility.yaml"
    provider = yaml.safe_load(path.read_text())["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["foldersFromFilesStructure"] is True


def test_build_check_reports_drift_and_build_repairs_it(tmp_path: Path) -> None:
    (tmp_path / "stale.json").write_text("{}")
    assert main(["build", "--check", "--out", str(tmp_path)]) == 1
    assert main(["build", "--out", str(tmp_path)]) == 0
    assert main(["build", "--check", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [p.name for p in PATHS]


def test_ingest_counters_become_rates_without_restart_spikes() -> None:
    queries = [t["query"] for t in _targets(BOARDS["pipeline-health"])]
    own = [q for q in queries if '"ingest_stats"' in q or '"ingest_rejections"' in q]
    counters = [q for q in own if re.search(r'"(received|stored|rejected|count)"', q)]
    assert len(own) >= 4 and counters
    for query in counters:
        assert "NON_NEGATIVE_DERIVATIVE" in query or "NON_NEGATIVE_DIFFERENCE" in query, query
