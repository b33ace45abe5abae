"""A raw InfluxQL query for the InfluxDB data source, as a grafana-foundation-sdk query type.

The SDK (0.0.21) ships no InfluxDB query builder, so this follows its documented recipe for
custom query types: a ``cogvariants.Dataquery`` model, a builder, and a registered variant so
``Dashboard.from_json`` reads our targets back into this class instead of an opaque dict.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.common import DataSourceRef

DATASOURCE_TYPE = "influxdb"
# Fixed so provisioning, dashboards and `push` agree without looking anything up.
DATASOURCE_UID = "facility-influxdb"

ResultFormat = Literal["time_series", "table", "logs"]

# Grafana's InfluxDB plugin keys, and the attribute names we give them.
_KEYS = {
    "ref_id": "refId",
    "hide": "hide",
    "datasource": "datasource",
    "query": "query",
    "raw_query": "rawQuery",
    "result_format": "resultFormat",
    "alias": "alias",
    "from_annotations": "fromAnnotations",
    "text_column": "textColumn",
    "tags_column": "tagsColumn",
    "title_column": "titleColumn",
}


def datasource_ref() -> DataSourceRef:
    """The provisioned InfluxDB data source, as every panel and target refers to it."""
    return DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw-mode InfluxQL target (the plugin's ``rawQuery: true`` editor mode)."""

    def __init__(
        self,
        query: str = "",
        ref_id: str | None = None,
        hide: bool | None = None,
        datasource: DataSourceRef | None = None,
        raw_query: bool = True,
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        from_annotations: bool | None = None,
        text_column: str | None = None,
        tags_column: str | None = None,
        title_column: str | None = None,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.hide = hide
        self.datasource = datasource
        self.raw_query = raw_query
        self.result_format = result_format
        self.alias = alias
        self.from_annotations = from_annotations
        self.text_column = text_column
        self.tags_column = tags_column
        self.title_column = title_column

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {}
        for attribute, key in _KEYS.items():
            value = getattr(self, attribute)
            if value is not None:
                payload[key] = value
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        args: dict[str, Any] = {}
        for attribute, key in _KEYS.items():
            if key in data:
                args[attribute] = data[key]
        if isinstance(args.get("datasource"), dict):
            args["datasource"] = DataSourceRef.from_json(args["datasource"])
        return cls(**args)


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder: ``InfluxQL('SELECT ... WHERE $timeFilter').ref_id('A').alias('$tag_device_id')``."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=query, datasource=datasource_ref())

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def hide(self, hide: bool) -> Self:
        self._internal.hide = hide
        return self

    def table(self) -> Self:
        """Rows with group-by tags as columns, for table panels."""
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> Self:
        """Series name, e.g. ``$tag_device_id`` or ``$col``."""
        self._internal.alias = alias
        return self

    def annotation_columns(self, text: str, tags: str, title: str | None = None) -> Self:
        """Which result columns become an annotation's text, tags and title."""
        self._internal.from_annotations = True
        self._internal.text_column = text
        self._internal.tags_column = tags
        self._internal.title_column = title
        return self


def register() -> None:
    """Let the SDK's JSON decoding map targets of the ``influxdb`` data source to this class."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(
            identifier=DATASOURCE_TYPE, from_json_hook=InfluxQLQuery.from_json
        )
    )
