"""Every dashboard query runs against a real InfluxDB 1.x holding a realistic day of data.

Grafana's macros and the dashboards' variables are substituted the way Grafana does; each
query must parse, return data, and name only measurements, fields, tags and tag values that
exist (InfluxQL silently returns nothing for unknown names, so that is checked separately).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.devices import load_registry
from common.lineproto import encode_lines
from common.queries import collected_kg, collection_kg
from grafana.boards.ewaste import WHERE
from grafana.panels import TZ_CLAUSE
from tests.integration.grafana_sample_data import DAY_MS, one_day
from tests.servers import InfluxDB1Server

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
DB = "grafana_dashboards"
INTERVAL = "5m"

# Words a query may use bare; everything else must be a "quoted" identifier, a 'string',
# a number, a /regex/ or a $variable.
KEYWORDS = {
    "select",
    "from",
    "where",
    "and",
    "or",
    "as",
    "group",
    "by",
    "time",
    "now",
    "fill",
    "null",
    "none",
    "previous",
    "linear",
    "tz",
    "order",
    "desc",
    "asc",
    "limit",
    "show",
    "tag",
    "values",
    "with",
    "key",
    "true",
    "false",
    "not",
    "last",
    "first",
    "mean",
    "max",
    "min",
    "sum",
    "count",
    "spread",
    "median",
    "top",
    "bottom",
    "distinct",
    "difference",
    "non_negative_difference",
    "derivative",
    "non_negative_derivative",
    "cumulative_sum",
    "moving_average",
    "elapsed",
    "percentile",
    "abs",
    "round",
}


def _end_ms() -> int:
    import time

    return int(time.time() // 60 * 60 * 1000)  # now, on a minute boundary


@pytest.fixture(scope="module")
def loaded(influxdb1_session: InfluxDB1Server) -> Iterator[tuple[InfluxDB1Server, int]]:
    registry = load_registry(ROOT / "config" / "devices.yaml")
    end_ms = _end_ms()
    influxdb1_session.create_database(DB)
    points = one_day(registry, end_ms)
    for start in range(0, len(points), 5000):
        influxdb1_session.write(encode_lines(points[start : start + 5000]), DB)
    yield influxdb1_session, end_ms
    influxdb1_session.query_raw(f'DROP DATABASE "{DB}"')


class Schema:
    """What the database really holds, from SHOW queries."""

    def __init__(self, server: InfluxDB1Server) -> None:
        self.fields: dict[str, set[str]] = {}
        self.tags: dict[str, set[str]] = {}
        self.tag_values: dict[str, set[str]] = {}
        for row in server.query("SHOW MEASUREMENTS", DB):
            name = row["name"]
            self.fields[name] = {
                r["fieldKey"] for r in server.query(f'SHOW FIELD KEYS FROM "{name}"', DB)
            }
            self.tags[name] = {
                r["tagKey"] for r in server.query(f'SHOW TAG KEYS FROM "{name}"', DB)
            }
            for key in self.tags[name]:
                values = server.query(f'SHOW TAG VALUES FROM "{name}" WITH KEY = "{key}"', DB)
                self.tag_values.setdefault(key, set()).update(r["value"] for r in values)

    def unknown_names(self, query: str) -> list[str]:
        problems: list[str] = []
        measurements = re.findall(r'FROM\s+"([^"]+)"', query)
        problems += [f"measurement {m!r}" for m in measurements if m not in self.fields]
        known = {m for m in measurements if m in self.fields}
        allowed = set(known).union(*(self.fields[m] | self.tags[m] for m in known))
        allowed |= set(re.findall(r'AS\s+"([^"]+)"', query))
        without_strings = re.sub(r"'[^']*'", "''", query)
        problems += [
            f"field or tag {name!r}"
            for name in re.findall(r'"([^"]+)"', without_strings)
            if name not in allowed
        ]
        tag_keys = set().union(*(self.tags[m] for m in known)) if known else set()
        for key, value in re.findall(r""""([^"]+)"\s*!?=\s*'([^']*)'""", query):
            if key in tag_keys and value not in self.tag_values.get(key, set()):
                problems.append(f"tag value {key}={value!r}")
        bare = re.sub(r"'[^']*'|\"[^\"]*\"|/[^/]*/|\$\w+|\b\d+(\.\d+)?[a-z]*\b", " ", query)
        problems += [
            f"bare word {word!r} (quote identifiers)"
            for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", bare)
            if word.lower() not in KEYWORDS
        ]
        return problems


def _regex_escape(value: str) -> str:
    """As Grafana's InfluxDB plugin escapes a variable value inside /.../."""
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", value)


def _targets(board: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in board.get("panels", []):
        for item in [panel, *panel.get("panels", [])]:
            for target in item.get("targets", []):
                yield f"panel {item['title']!r} {target['refId']}", target
    for annotation in board["annotations"]["list"]:
        if "target" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["target"]


def _substitute(query: str, variables: dict[str, str], start_ms: int, end_ms: int) -> str:
    query = query.replace("$timeFilter", f"time >= {start_ms}ms AND time <= {end_ms}ms")
    query = query.replace("$__interval", INTERVAL)
    for name in sorted(variables, key=len, reverse=True):
        query = query.replace(f"${name}", variables[name])
    assert not re.search(r"\$\{?\w", query), f"unresolved variable in {query}"
    return query


def _variables(board: dict[str, Any], server: InfluxDB1Server, schema: Schema) -> dict[str, str]:
    """Each variable as Grafana would expand it: query variables to all their values."""
    values: dict[str, str] = {}
    for variable in board["templating"].get("list", []):
        name = variable["name"]
        if variable["type"] == "query":
            query = variable["query"]
            assert not schema.unknown_names(query), (name, schema.unknown_names(query))
            found = [row["value"] for row in server.query(query, DB)]
            assert found, f"variable {name}: {query} returned no values"
            values[name] = "(" + "|".join(_regex_escape(v) for v in found) + ")"
        else:
            current = variable["current"]["value"]
            assert isinstance(current, str)
            values[name] = current
    return values


def _has_values(body: dict[str, Any]) -> bool:
    for result in body.get("results", []):
        for series in result.get("series", []):
            for row in series.get("values", []):
                if any(v is not None for v in row[1:]):
                    return True
    return False


CHECKED: dict[str, int] = {}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_query_returns_data_for_a_simulated_day(
    path: Path, loaded: tuple[InfluxDB1Server, int]
) -> None:
    server, end_ms = loaded
    schema = Schema(server)
    board = json.loads(path.read_text())
    variables = _variables(board, server, schema)
    # Grafana's range is never aligned to anything; an aligned one would hide bucket-edge bugs.
    start_ms, end_ms = end_ms - DAY_MS + 17_123, end_ms + 17_123
    failures = []
    checked = 0
    for where, target in _targets(board):
        query = target["query"]
        if problems := schema.unknown_names(query):
            failures.append(f"{where}: unknown {', '.join(problems)}\n    {query}")
            continue
        sql = _substitute(query, variables, start_ms, end_ms)
        try:
            body = server.query_raw(sql, DB)
        except Exception as exc:
            failures.append(f"{where}: {exc}")
            continue
        if not _has_values(body):
            failures.append(f"{where}: no data\n    {sql}")
            continue
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked > 0
    CHECKED[path.stem] = checked
    print(f"{path.stem}: {checked} queries checked against real data")


def _map_rows(server: InfluxDB1Server, end_ms: int, ref_id: str) -> list[dict[str, Any]]:
    board = json.loads((ROOT / "grafana" / "dashboards" / "ewaste-collection.json").read_text())
    [panel] = [p for p in board["panels"] if p["type"] == "geomap"]
    [target] = [t for t in panel["targets"] if t["refId"] == ref_id]
    variables = _variables(board, server, Schema(server))
    # The panel shows today (timeFrom now/d); the sample day ends now.
    sql = _substitute(target["query"], variables, end_ms - DAY_MS, end_ms)
    return server.query(sql, DB)


def test_map_places_every_bin_by_its_registry_coordinates_and_marks_silent_ones(
    loaded: tuple[InfluxDB1Server, int],
) -> None:
    server, end_ms = loaded
    registry = load_registry(ROOT / "config" / "devices.yaml")
    bins = {b.id: b for b in registry.bins()}
    placed = _map_rows(server, end_ms, "A")
    assert sorted(r["device_id"] for r in placed) == sorted(bins)
    for row in placed:
        where = bins[row["device_id"]]
        assert (float(row["latitude"]), float(row["longitude"])) == (
            where.latitude,
            where.longitude,
        )
        assert 0 <= row["fill"] <= 100
    # The bins that went offline in the evening stopped reporting: only they are stale.
    silent = {b.id for i, b in enumerate(registry.bins()) if i % 10 == 3}
    stale = _map_rows(server, end_ms, "B")
    assert {r["device_id"] for r in stale} == silent
    assert all(float(r["latitude"]) == bins[r["device_id"]].latitude for r in stale)
    [depot] = _map_rows(server, end_ms, "C")
    assert (depot["latitude"], depot["longitude"]) == (
        registry.depot.latitude,
        registry.depot.longitude,
    )


def test_map_draws_todays_routes_from_the_depot_through_the_bins_and_back(
    loaded: tuple[InfluxDB1Server, int],
) -> None:
    server, end_ms = loaded
    registry = load_registry(ROOT / "config" / "devices.yaml")
    stops = _map_rows(server, end_ms, "D")
    by_truck: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(stops, key=lambda r: r["time"]):
        by_truck.setdefault(row["truck_id"], []).append(row)
    assert set(by_truck) == {t.id for t in registry.trucks}
    for route in by_truck.values():
        assert [r["stop"] for r in route] == list(range(len(route)))
        assert route[0]["device_id"] == route[-1]["device_id"] == "depot"
        assert (route[0]["latitude"], route[0]["longitude"]) == (
            registry.depot.latitude,
            registry.depot.longitude,
        )
        for row in route[1:-1]:
            device = registry.device(row["device_id"])
            assert device is not None
            assert (row["latitude"], row["longitude"]) == (device.latitude, device.longitude)


@pytest.mark.parametrize(
    "group_by",
    [
        "",
        'GROUP BY "residential_type"',
        f'GROUP BY time(1d), "residential_type" fill(0) {TZ_CLAUSE}',
    ],
    ids=["total", "by_housing_type", "per_day_by_housing_type"],
)
def test_collection_points_give_the_same_kg_as_the_raw_weight_query(
    group_by: str, loaded: tuple[InfluxDB1Server, int]
) -> None:
    """The E-waste panels' kg from ``collection`` (issue 15) equal the old DIFFERENCE over raw
    weights on the same day: the derived series says what the readings said."""
    server, end_ms = loaded
    board = json.loads((ROOT / "grafana" / "dashboards" / "ewaste-collection.json").read_text())
    variables = _variables(board, server, Schema(server))
    start_ms = end_ms - DAY_MS + 17_123

    def kg(query: str) -> list[tuple[str, int, float]]:
        sql = _substitute(query, variables, start_ms, end_ms)
        rows = server.query(sql, DB)
        return sorted((r.get("residential_type", ""), r["time"], r["kg"] or 0.0) for r in rows)

    derived = kg(collection_kg("kg", WHERE, group_by))
    raw = kg(collected_kg("kg", WHERE, group_by))
    assert sum(k for *_, k in derived) > 100  # the sample day has emptyings to compare
    assert [row[:2] for row in derived] == [row[:2] for row in raw]
    assert [row[2] for row in derived] == pytest.approx([row[2] for row in raw], abs=1e-6)
