"""common.lineproto against a real InfluxDB 1.x: what we encode is accepted and reads back equal."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.lineproto import encode_lines, encode_point
from tests.servers import InfluxDB1Server

DB = "lineproto_roundtrip"
_measurements = itertools.count()

# Names people and devices actually use, plus the characters line protocol must escape
# (space, comma, equals, quotes) and non-ASCII. Backslashes and control characters in
# identifiers are out: InfluxDB has no lossless escape for some of them (see test_lineproto).
NAME_CHARS = st.characters(codec="utf-8", categories=("L", "N"), include_characters=" ,=-_.\"'#")
names = st.text(NAME_CHARS, min_size=1, max_size=12).filter(lambda s: s.strip() == s)
tag_values = st.text(NAME_CHARS, min_size=1, max_size=20).filter(lambda s: s.strip() == s)
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    # String fields may hold anything printable, including quotes and backslashes.
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=30),
)


def _measurement() -> str:
    # One measurement per example: InfluxDB fixes a field's type per shard and measurement.
    return f"roundtrip_{next(_measurements)}"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tags=st.dictionaries(names.map(lambda k: "t " + k), tag_values, max_size=4),
    fields=st.dictionaries(names.map(lambda k: "f " + k), field_values, min_size=1, max_size=4),
    ts_ms=st.integers(min_value=0, max_value=4_102_444_800_000),
)
def test_influxdb_returns_the_values_we_encoded(
    influxdb1_session: InfluxDB1Server,
    tags: dict[str, str],
    fields: dict[str, float | int | bool | str],
    ts_ms: int,
) -> None:
    influxdb1_session.create_database(DB)
    measurement = _measurement()
    influxdb1_session.write(encode_point(measurement, tags, fields, ts_ms), DB)

    rows = influxdb1_session.query(f'SELECT * FROM "{measurement}"', DB)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["time"] == ts_ms
    for tag_key, tag_value in tags.items():
        assert row[tag_key] == tag_value
    for key, value in fields.items():
        stored = row[key]
        if isinstance(value, bool):
            assert stored is value
        elif isinstance(value, float):
            # JSON writes 2.0 as 2; the value must still be the very same float.
            assert float(stored) == value
        else:
            assert stored == value and type(stored) is type(value)


def test_a_batch_of_contract_points_is_stored_exactly(influxdb1_session: InfluxDB1Server) -> None:
    influxdb1_session.create_database(DB)
    base = 1_790_000_000_000
    points = [
        ("ewaste_bin_batch", {"site": "ewaste", "device_id": f"bin-{i:03d}", "zone": "haan"},
         {"weight_kg": 10.5 + i, "fill_pct": float(i), "lid_open": i % 2 == 0}, base + i)
        for i in range(50)
    ]  # fmt: skip
    influxdb1_session.write(encode_lines(points), DB)
    rows = influxdb1_session.query('SELECT * FROM "ewaste_bin_batch"', DB)
    assert len(rows) == 50
    assert [r["time"] for r in rows] == [base + i for i in range(50)]
    assert rows[7]["weight_kg"] == 17.5 and rows[7]["lid_open"] is False
    assert rows[8]["device_id"] == "bin-008" and rows[8]["zone"] == "haan"
