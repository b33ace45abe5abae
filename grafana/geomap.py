"""Geomap layers for dashboards as code: markers and routes placed by latitude/longitude
columns, each drawing the frames of one query (``refId``)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.models import common

# Icons Grafana ships with the Geomap panel.
CIRCLE = "img/icons/marker/circle.svg"
SQUARE = "img/icons/marker/square.svg"
CROSS = "img/icons/marker/x-mark.svg"


def _coords() -> common_builders.FrameGeometrySource:
    return (
        common_builders.FrameGeometrySource()
        .mode(common.FrameGeometrySourceMode.COORDS)
        .latitude("latitude")
        .longitude("longitude")
    )


def _of_query(ref_id: str) -> dict[str, str]:
    return {"id": "byRefId", "options": ref_id}


def markers(
    name: str,
    ref_id: str,
    *,
    symbol: str,
    size: int,
    color: str,
    color_field: str | None = None,
    label_field: str | None = None,
) -> common_builders.MapLayerOptions:
    """One marker per row of query ``ref_id``; coloured by ``color_field``'s thresholds when
    given, else ``color``; labelled with ``label_field`` when given."""
    style: dict[str, object] = {
        "size": {"fixed": size},
        "color": {"fixed": color, **({"field": color_field} if color_field else {})},
        "opacity": 0.9,
        "symbol": {"mode": "fixed", "fixed": symbol},
    }
    if label_field:
        style["text"] = {"mode": "field", "field": label_field, "fixed": ""}
        style["textConfig"] = {
            "fontSize": 10,
            "offsetY": -12,
            "textAlign": "center",
            "textBaseline": "bottom",
        }
    return (
        common_builders.MapLayerOptions()
        .type("markers")
        .name(name)
        .config({"showLegend": True, "style": style})
        .location(_coords())
        .filter_data(_of_query(ref_id))
        .tooltip(True)
    )


def route(name: str, ref_id: str, color: str) -> common_builders.MapLayerOptions:
    """Lines through the rows of query ``ref_id`` in time order, one per series (truck)."""
    return (
        common_builders.MapLayerOptions()
        .type("route")
        .name(name)
        .config(
            {
                "arrow": 1,
                "style": {
                    "color": {"fixed": color},
                    "lineWidth": 3,
                    "opacity": 0.8,
                    "size": {"fixed": 4},
                },
            }
        )
        .location(_coords())
        .filter_data(_of_query(ref_id))
        .tooltip(True)
    )
