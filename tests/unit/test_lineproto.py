"""common.lineproto against influxdb-client's Point as oracle, plus its escaping and errors."""

import math
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from common import lineproto
from common.lineproto import FieldValue, LineProtocolError, encode_lines, encode_point

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TS_MS_MAX = 9_223_372_036_854  # InfluxDB's last valid nanosecond, in milliseconds

MEASUREMENT_SEPARATORS = ", "
KEY_SEPARATORS = ", ="


def oracle(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    ts_ms: int,
) -> str:
    point: Any = Point(measurement)
    for key, tag_value in tags.items():
        point.tag(key, tag_value)
    for key, field_value in fields.items():
        point.field(key, field_value)
    return str(point.time(ts_ms, WritePrecision.MS).to_line_protocol())


def representable(text: str, separators: str) -> bool:
    """The documented rule: no backslash at the end or directly before a separator."""
    return bool(text) and not (text.endswith("\\") or any("\\" + sep in text for sep in separators))


# Text biased towards the characters line protocol cares about, mixed with any unicode.
SPECIALS = st.sampled_from([" ", ",", "=", '"', "\\", "\n", "\t", "\r", "#", "é", "日", "🗑"])
# codec="utf-8" leaves out lone surrogates, which have their own test.
raw_text = st.text(alphabet=st.one_of(SPECIALS, st.characters(codec="utf-8")), max_size=12)

measurements = raw_text.filter(
    lambda s: representable(s, MEASUREMENT_SEPARATORS) and not s.startswith("#")
)
keys = raw_text.filter(lambda s: representable(s, KEY_SEPARATORS))
tag_values = st.one_of(st.just(""), keys)  # empty values are omitted, as Point does
field_values: st.SearchStrategy[FieldValue] = st.one_of(
    st.booleans(),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 1e15, 1e16, 1e20, 1e-7, 5e-324, 1.7976931348623157e308]),
    raw_text,
)
tag_sets = st.dictionaries(keys, tag_values, max_size=5)
field_sets = st.dictionaries(keys, field_values, min_size=1, max_size=6)
timestamps = st.integers(-TS_MS_MAX, TS_MS_MAX)


@settings(max_examples=500)
@given(measurements, tag_sets, field_sets, timestamps)
def test_matches_influxdb_client_point(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], ts_ms: int
) -> None:
    assert encode_point(measurement, tags, fields, ts_ms) == oracle(
        measurement, tags, fields, ts_ms
    )


@given(measurements, tag_sets, field_sets, timestamps, st.data())
def test_int_fields_writes_other_ints_as_point_writes_the_same_float(
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, FieldValue],
    ts_ms: int,
    data: st.DataObject,
) -> None:
    int_fields = frozenset(data.draw(st.sets(st.sampled_from(sorted(fields)))))
    as_point_sees_them = {
        key: float(value)
        if type(value) is int and key not in int_fields  # bool is never converted
        else value
        for key, value in fields.items()
    }
    assert encode_point(measurement, tags, fields, ts_ms, int_fields=int_fields) == oracle(
        measurement, tags, as_point_sees_them, ts_ms
    )


@given(st.lists(st.tuples(measurements, tag_sets, field_sets, timestamps), max_size=5))
def test_encode_lines_is_utf8_lines_each_ending_in_newline(
    points: list[tuple[str, dict[str, str], dict[str, FieldValue], int]],
) -> None:
    expected = "".join(oracle(*point) + "\n" for point in points).encode("utf-8")
    assert encode_lines(points) == expected


def unrepresentable(separators: str) -> st.SearchStrategy[str]:
    """Text with a backslash at its end or directly before one of the separators."""
    return st.builds(
        lambda head, sep, tail: head + "\\" + (sep + tail if sep else ""),
        raw_text,
        st.sampled_from(["", *separators]),
        raw_text,
    )


@given(st.sampled_from(["measurement", "tag key", "tag value", "field key"]), st.data())
def test_refuses_names_that_line_protocol_cannot_carry(place: str, data: st.DataObject) -> None:
    # "=" needs no escape in a measurement, so a measurement has fewer separators to trip on.
    separators = MEASUREMENT_SEPARATORS if place == "measurement" else KEY_SEPARATORS
    bad = data.draw(unrepresentable(separators))
    assert not representable(bad, separators)
    measurement, tags, fields = "m", {"site": "s1"}, {"v": 1.0}
    if place == "measurement":
        measurement = bad
    elif place == "tag key":
        tags = {bad: "x"}
    elif place == "tag value":
        tags = {"site": bad}
    else:
        fields = {bad: 1.0}
    with pytest.raises(LineProtocolError, match="backslash"):
        encode_point(measurement, tags, fields, 0)


# --- escaping, one rule at a time -------------------------------------------------------


def test_measurement_escapes_comma_and_space_but_not_equals() -> None:
    assert encode_point("a b,c=d", {}, {"f": 1.0}, 1) == r"a\ b\,c=d f=1 1"


def test_tag_keys_and_values_escape_comma_equals_and_space() -> None:
    line = encode_point("m", {"k ,=": "v ,="}, {"f": 1.0}, 1)
    assert line == r"m,k\ \,\==v\ \,\= f=1 1"


def test_field_keys_escape_comma_equals_and_space() -> None:
    assert encode_point("m", {}, {"f ,=": 1.0}, 1) == r"m f\ \,\==1 1"


def test_string_fields_are_quoted_with_quote_and_backslash_escaped() -> None:
    line = encode_point("m", {}, {"msg": 'say "hi" \\ ok, a=b'}, 1)
    assert line == r'm msg="say \"hi\" \\ ok, a=b" 1'


def test_newline_tab_and_cr_in_names_are_written_as_point_writes_them() -> None:
    line = encode_point("m\n", {"k\t": "v\r"}, {"f\n": 1.0}, 1)
    assert line == r"m\n,k\t=v\r f\n=1 1"
    assert line == oracle("m\n", {"k\t": "v\r"}, {"f\n": 1.0}, 1)


def test_newline_in_a_string_field_stays_inside_the_quotes() -> None:
    assert encode_point("m", {}, {"msg": "a\nb"}, 1) == 'm msg="a\nb" 1'


def test_backslash_not_before_a_separator_is_kept_literally() -> None:
    assert encode_point("m\\x", {"k\\x": "v\\\\x"}, {"f\\x": 1.0}, 1) == (
        "m\\x,k\\x=v\\\\x f\\x=1 1"
    )


def test_unicode_passes_through_unescaped() -> None:
    line = encode_point("mesure", {"site": "café 日"}, {"note": "🗑"}, 1)
    assert line == 'mesure,site=café\\ 日 note="🗑" 1'


def test_tags_are_sorted_by_key_whatever_the_mapping_order() -> None:
    one = encode_point("m", {"b": "2", "a": "1", "c": "3"}, {"f": 1.0}, 1)
    other = encode_point("m", {"c": "3", "a": "1", "b": "2"}, {"f": 1.0}, 1)
    assert one == other == "m,a=1,b=2,c=3 f=1 1"


def test_fields_are_sorted_by_key_as_point_sorts_them() -> None:
    assert encode_point("m", {}, {"z": 1.0, "a": 2.0}, 1) == "m a=2,z=1 1"


def test_tags_with_empty_value_are_left_out() -> None:
    assert encode_point("m", {"zone": "", "site": "s1"}, {"f": 1.0}, 1) == "m,site=s1 f=1 1"


def test_point_without_tags_has_no_comma_after_measurement() -> None:
    assert encode_point("m", {}, {"f": 1.0}, 1) == "m f=1 1"


# --- field types -----------------------------------------------------------------------


def test_bool_is_true_or_false_never_an_integer() -> None:
    line = encode_point("m", {}, {"a": True, "b": False}, 1, int_fields=frozenset({"a", "b"}))
    assert line == "m a=true,b=false 1"


def test_int_gets_the_i_suffix() -> None:
    assert encode_point("m", {}, {"n": 123, "neg": -5}, 1) == "m n=123i,neg=-5i 1"


def test_int64_extremes_are_accepted() -> None:
    line = encode_point("m", {}, {"lo": INT64_MIN, "hi": INT64_MAX}, 1)
    assert line == f"m hi={INT64_MAX}i,lo={INT64_MIN}i 1"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (12.5, "12.5"),
        (1e15, "1000000000000000"),
        (1e16, "1e+16"),
        (1e20, "1e+20"),
        (1e-7, "1e-07"),
        (1.2345678901234568e17, "1.2345678901234568e+17"),
    ],
)
def test_float_formatting_matches_point(value: float, text: str) -> None:
    assert encode_point("m", {}, {"f": value}, 1) == f"m f={text} 1"
    assert oracle("m", {}, {"f": value}, 1) == f"m f={text} 1"


def test_int_fields_keeps_listed_ints_and_writes_the_rest_as_floats() -> None:
    line = encode_point(
        "visitors",
        {},
        {"entries_total": 12, "weight_kg": 12, "fill_pct": 3.0},
        1,
        int_fields=frozenset({"entries_total"}),
    )
    assert line == "visitors entries_total=12i,fill_pct=3,weight_kg=12 1"


def test_timestamp_is_written_as_given_milliseconds() -> None:
    assert encode_point("m", {}, {"f": 1.0}, 1_718_000_000_123).endswith(" 1718000000123")


def test_negative_timestamp_before_1970_is_allowed() -> None:
    assert encode_point("m", {}, {"f": 1.0}, -1) == "m f=1 -1"


def test_str_subclass_and_int_subclass_values_encode_like_their_base() -> None:
    class Label(str):
        pass

    class Count(int):
        pass

    line = encode_point("m", {"site": Label("s1")}, {"l": Label("x"), "n": Count(3)}, 1)
    assert line == 'm,site=s1 l="x",n=3i 1'


# --- errors ----------------------------------------------------------------------------


def test_error_is_a_value_error() -> None:
    assert issubclass(LineProtocolError, ValueError)


def test_point_without_fields_is_refused() -> None:
    # Point returns "" here, which a batch writer would silently drop.
    with pytest.raises(LineProtocolError, match="no fields"):
        encode_point("m", {"site": "s1"}, {}, 1)


@pytest.mark.parametrize(
    ("measurement", "tags", "fields"),
    [
        ("", {}, {"f": 1.0}),
        ("m", {"": "v"}, {"f": 1.0}),
        ("m", {"": ""}, {"f": 1.0}),
        ("m", {}, {"": 1.0}),
    ],
    ids=["measurement", "tag-key", "tag-key-with-empty-value", "field-key"],
)
def test_empty_names_are_refused(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue]
) -> None:
    with pytest.raises(LineProtocolError, match="empty"):
        encode_point(measurement, tags, fields, 1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(LineProtocolError, match="cannot store"):
        encode_point("m", {}, {"ok": 1.0, "f": value}, 1)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1])
def test_ints_outside_int64_are_refused(value: int) -> None:
    with pytest.raises(LineProtocolError, match="int64"):
        encode_point("m", {}, {"n": value}, 1)


def test_int_too_large_for_a_float_is_refused_when_written_as_float() -> None:
    with pytest.raises(LineProtocolError, match="too large"):
        encode_point("m", {}, {"n": 10**400}, 1, int_fields=frozenset())


@pytest.mark.parametrize("value", [None, b"bytes", [1], 1j])
def test_unsupported_field_types_are_refused(value: object) -> None:
    with pytest.raises(LineProtocolError, match="unsupported type"):
        encode_point("m", {}, {"f": value}, 1)  # type: ignore[dict-item]


def test_non_str_tag_value_is_refused() -> None:
    with pytest.raises(LineProtocolError, match="must be str"):
        encode_point("m", {"site": 5}, {"f": 1.0}, 1)  # type: ignore[dict-item]


@pytest.mark.parametrize("ts", [1.5, True, "1718000000123", None])
def test_timestamp_must_be_an_int(ts: object) -> None:
    with pytest.raises(LineProtocolError, match="timestamp"):
        encode_point("m", {}, {"f": 1.0}, ts)  # type: ignore[arg-type]


@pytest.mark.parametrize("ts", [TS_MS_MAX + 1, -TS_MS_MAX - 1, 1_718_000_000_123_000_000])
def test_timestamp_outside_influxdb_range_is_refused(ts: int) -> None:
    # The last one is nanoseconds passed as milliseconds.
    with pytest.raises(LineProtocolError, match="range"):
        encode_point("m", {}, {"f": 1.0}, ts)


def test_measurement_starting_with_hash_is_refused_as_it_would_be_a_comment() -> None:
    with pytest.raises(LineProtocolError, match="comment"):
        encode_point("#m", {}, {"f": 1.0}, 1)


@pytest.mark.parametrize(
    ("measurement", "tags", "fields"),
    [
        ("m\\", {}, {"f": 1.0}),
        ("m\\,x", {}, {"f": 1.0}),
        ("m", {"k\\": "v"}, {"f": 1.0}),
        ("m", {"k": "v\\"}, {"f": 1.0}),
        ("m", {"k": "a\\=b"}, {"f": 1.0}),
        ("m", {}, {"f\\ x": 1.0}),
    ],
)
def test_backslash_before_a_separator_or_at_the_end_is_refused(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue]
) -> None:
    with pytest.raises(LineProtocolError, match="backslash"):
        encode_point(measurement, tags, fields, 1)


def test_encode_lines_joins_with_newlines_and_ends_with_one() -> None:
    body = encode_lines([("m", {"site": "s1"}, {"f": 1.0}, 1), ("m", {}, {"g": "ä"}, 2)])
    assert body == 'm,site=s1 f=1 1\nm g="ä" 2\n'.encode()


def test_encode_lines_of_nothing_is_empty() -> None:
    assert encode_lines([]) == b""


def test_encode_lines_refuses_text_without_utf8_form() -> None:
    # json.loads('"\\ud800"') produces such a lone surrogate from device input.
    with pytest.raises(LineProtocolError, match="UTF-8"):
        encode_lines([("m", {}, {"msg": "\ud800"}, 1)])


def test_encode_lines_refuses_the_batch_if_one_point_is_bad() -> None:
    with pytest.raises(LineProtocolError):
        encode_lines([("m", {}, {"f": 1.0}, 1), ("m", {}, {"f": math.nan}, 2)])


# --- caches ----------------------------------------------------------------------------


def test_results_stay_correct_when_the_caches_overflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lineproto, "_CACHE_LIMIT", 3)
    monkeypatch.setattr(lineproto, "_series_cache", {})
    monkeypatch.setattr(lineproto, "_field_layout_cache", {})
    for round_ in range(2):
        for n in range(10):
            tags = {"device_id": f"bin-{n}"}
            fields: dict[str, FieldValue] = {f"f{n}": float(n), "lid_open": bool(round_)}
            assert encode_point("m", tags, fields, n) == oracle("m", tags, fields, n)
    assert len(lineproto._series_cache) <= 3
    assert len(lineproto._field_layout_cache) <= 3


def test_a_refused_series_is_not_cached() -> None:
    for _ in range(2):
        with pytest.raises(LineProtocolError):
            encode_point("m", {"": "v"}, {"f": 1.0}, 1)
