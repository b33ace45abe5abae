"""The e-waste map: its Geomap panel as generated, the bins' coordinates as registry tags and
the planned routes the dispatch desk writes for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.devices import load_registry
from common.schema import DEPOT_STOP, ROUTE_MEASUREMENT
from services.alerts.dispatch.desk import DispatchDesk
from tests.unit.alerts.helpers import HOUR, T0, bin_reading

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = load_registry(ROOT / "config" / "devices.yaml")


def _map_panel() -> dict[str, Any]:
    board = json.loads((ROOT / "grafana" / "dashboards" / "ewaste-collection.json").read_text())
    [panel] = [p for p in board["panels"] if p["type"] == "geomap"]
    assert isinstance(panel, dict)
    return panel


def test_map_panel_has_bins_by_fill_stale_bins_the_depot_and_todays_routes() -> None:
    panel = _map_panel()
    layers = {layer["name"]: layer for layer in panel["options"]["layers"]}
    assert list(layers) == ["Routes today", "Bins (fill)", "No reading for 15m", "Depot"]
    queries = {t["refId"]: t["query"] for t in panel["targets"]}
    for layer in layers.values():
        ref_id = layer["filterData"]["options"]
        assert layer["filterData"]["id"] == "byRefId" and ref_id in queries
        assert layer["location"] == {
            "mode": "coords",
            "latitude": "latitude",
            "longitude": "longitude",
        }
        # Every query a layer draws yields the columns the layer places its markers by.
        assert '"latitude"' in queries[ref_id] and '"longitude"' in queries[ref_id]
    assert layers["Routes today"]["type"] == "route"
    assert 'FROM "dispatch_stop" WHERE $timeFilter' in queries["D"]
    assert panel["timeFrom"] == "now/d"  # today's routes
    bins = layers["Bins (fill)"]["config"]["style"]
    assert bins["color"]["field"] == "fill" and 'LAST("fill_pct") AS "fill"' in queries["A"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 60, 80, 95]
    stale = layers["No reading for 15m"]["config"]["style"]["symbol"]["fixed"]
    assert stale.endswith("x-mark.svg")
    depot = REGISTRY.depot
    assert f'+ {depot.latitude!r} AS "latitude"' in queries["C"]
    assert f'+ {depot.longitude!r} AS "longitude"' in queries["C"]
    [convert] = panel["transformations"]
    assert convert["id"] == "convertFieldType"
    assert {c["targetField"] for c in convert["options"]["conversions"]} == {
        "latitude",
        "longitude",
    }
    assert panel["options"]["view"]["id"] == "fit"


def test_every_bin_is_tagged_with_its_registry_coordinates_and_nothing_else_is() -> None:
    for device in REGISTRY.devices:
        tags = REGISTRY.tags_for(device.site, device.id)
        if device.kind == "ewaste_bin":
            assert (float(tags["latitude"]), float(tags["longitude"])) == (
                device.latitude,
                device.longitude,
            )
        else:
            assert "latitude" not in tags, device.id


def test_planning_a_dispatch_writes_its_route_from_the_depot_and_back() -> None:
    desk = DispatchDesk(REGISTRY, opportunistic_pct=70, timeout_ms=6 * HOUR)
    desk.observe(bin_reading("bin-001", T0, 95))
    desk.observe(bin_reading("bin-002", T0, 75))
    desk.want("bin-001")
    out = desk.plan(T0)
    [request] = out.requests
    route = [p for p in out.points if p[0] == ROUTE_MEASUREMENT]
    assert [p[2]["device_id"] for p in route] == [
        DEPOT_STOP,
        *(s.device_id for s in request.stops),
        DEPOT_STOP,
    ]
    assert [p[2]["stop"] for p in route] == list(range(len(request.stops) + 2))
    assert [p[3] for p in route] == [T0 + n for n in range(len(route))]  # driving order
    assert all(p[1] == {"zone": request.zone, "truck_id": request.truck_id} for p in route)
    assert all(p[2]["dispatch_id"] == request.dispatch_id for p in route)
    depot = (REGISTRY.depot.latitude, REGISTRY.depot.longitude)
    assert (route[0][2]["latitude"], route[0][2]["longitude"]) == depot
    for point, stop in zip(route[1:-1], request.stops, strict=True):
        assert (point[2]["latitude"], point[2]["longitude"]) == (stop.latitude, stop.longitude)
