"""The contract's validation rules, one bad payload per rule, and good payloads accepted."""

from __future__ import annotations

import json
import logging
import math

import pytest
from pydantic import BaseModel, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from common import payloads as p
from common.kinds import EwasteBinTelemetry
from common.payloads import Reading, Rejection, StatusReading, parse_message
from common.topics import Topics

NOW_MS = 1_795_000_000_000  # 2026-11-19, fixed so the future-ts rule is deterministic
TOPICS = Topics("facility")
BIN = "facility/ewaste/ewaste_bin/bin-001/telemetry"
METER = "facility/nzc/energy_meter/nzc-meter-1/telemetry"
GATE = "facility/uac/visitor_counter/uac-gate-main/telemetry"


def bin_payload(**overrides: object) -> bytes:
    body: dict[str, object] = {"ts": NOW_MS - 1000, "weight_kg": 12.5, "fill_pct": 40}
    body.update(overrides)
    return json.dumps(body).encode()


def judge(topic: str, payload: bytes) -> p.ParseResult:
    return parse_message(topic, payload, TOPICS, now_ms=NOW_MS)


BAD: list[tuple[str, str, bytes, str]] = [
    # (case id, topic, payload, expected reason code)
    ("not json", BIN, b"{weight_kg: 1", p.INVALID_JSON),
    ("truncated json", BIN, b'{"ts": 1, "weight_kg": 1', p.INVALID_JSON),
    ("empty payload", BIN, b"", p.INVALID_JSON),
    ("json array", BIN, b"[1, 2]", p.NOT_OBJECT),
    ("json string", BIN, b'"hello"', p.NOT_OBJECT),
    ("json number", BIN, b"42", p.NOT_OBJECT),
    ("json null", BIN, b"null", p.NOT_OBJECT),
    ("non-utf8 bytes", BIN, b'{"ts": 1, "x": "\xff\xfe"}', p.NOT_UTF8),
    ("oversize", BIN, bin_payload(pad="x" * (17 * 1024)), p.TOO_LARGE),
    ("deep nesting", BIN, b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", p.INVALID_JSON),
    ("missing ts", BIN, json.dumps({"weight_kg": 1, "fill_pct": 1}).encode(), p.MISSING_FIELD),
    ("missing fill", BIN, json.dumps({"ts": NOW_MS, "weight_kg": 1}).encode(), p.MISSING_FIELD),
    ("weight as string", BIN, bin_payload(weight_kg="12"), p.WRONG_TYPE),
    ("fill true as number", BIN, bin_payload(fill_pct=True), p.WRONG_TYPE),
    ("weight object", BIN, bin_payload(weight_kg={"v": 1}), p.WRONG_TYPE),
    ("weight list", BIN, bin_payload(weight_kg=[1]), p.WRONG_TYPE),
    ("lid_open as int", BIN, bin_payload(lid_open=1), p.WRONG_TYPE),
    ("lid_open as string", BIN, bin_payload(lid_open="true"), p.WRONG_TYPE),
    ("weight NaN", BIN, b'{"ts": 1, "weight_kg": NaN, "fill_pct": 1}', p.NOT_FINITE),
    ("weight Infinity", BIN, b'{"ts": 1, "weight_kg": Infinity, "fill_pct": 1}', p.NOT_FINITE),
    ("temp -Infinity", BIN, bin_payload(temperature_c=-math.inf), p.NOT_FINITE),
    ("overflowing float", BIN, b'{"ts": 1, "weight_kg": 1e999, "fill_pct": 1}', p.NOT_FINITE),
    ("negative weight", BIN, bin_payload(weight_kg=-0.1), p.OUT_OF_RANGE),
    ("fill over 100", BIN, bin_payload(fill_pct=100.5), p.OUT_OF_RANGE),
    ("fill negative", BIN, bin_payload(fill_pct=-1), p.OUT_OF_RANGE),
    ("capacity zero", BIN, bin_payload(capacity_kg=0), p.OUT_OF_RANGE),
    ("battery 101", BIN, bin_payload(battery_pct=101), p.OUT_OF_RANGE),
    ("ts 10 min ahead", BIN, bin_payload(ts=NOW_MS + 600_000), p.TS_IN_FUTURE),
    ("ts rfc3339 ahead", BIN, bin_payload(ts="2026-11-19T09:00:00Z"), p.TS_IN_FUTURE),
    ("ts garbage", BIN, bin_payload(ts="yesterday"), p.INVALID_TS),
    ("ts without offset", BIN, bin_payload(ts="2026-11-01T10:00:00"), p.INVALID_TS),
    ("ts date only", BIN, bin_payload(ts="2026-11-01"), p.INVALID_TS),
    ("ts float", BIN, bin_payload(ts=1.5e12), p.INVALID_TS),
    ("ts bool", BIN, bin_payload(ts=True), p.INVALID_TS),
    ("ts negative", BIN, bin_payload(ts=-5), p.INVALID_TS),
    ("seq negative", BIN, bin_payload(seq=-1), p.OUT_OF_RANGE),
    ("seq float", BIN, bin_payload(seq=1.5), p.WRONG_TYPE),
    ("device_id mismatch", BIN, bin_payload(device_id="bin-002"), p.DEVICE_ID_MISMATCH),
    ("device_id not string", BIN, bin_payload(device_id=7), p.WRONG_TYPE),
    ("meter no fields", METER, json.dumps({"ts": NOW_MS}).encode(), p.NO_FIELDS),
    ("meter negative pv", METER, json.dumps({"ts": 1, "pv_power_w": -5}).encode(), p.OUT_OF_RANGE),
    (
        "meter soc 150",
        METER,
        json.dumps({"ts": 1, "battery_soc_pct": 150}).encode(),
        p.OUT_OF_RANGE,
    ),
    ("meter grid bool", METER, json.dumps({"ts": 1, "grid_power_w": False}).encode(), p.WRONG_TYPE),
    (
        "gate entries float",
        GATE,
        json.dumps({"ts": 1, "entries_total": 1.5, "exits_total": 0}).encode(),
        p.WRONG_TYPE,
    ),
    (
        "gate negative exits",
        GATE,
        json.dumps({"ts": 1, "entries_total": 1, "exits_total": -1}).encode(),
        p.OUT_OF_RANGE,
    ),
    (
        "gate missing exits",
        GATE,
        json.dumps({"ts": 1, "entries_total": 1}).encode(),
        p.MISSING_FIELD,
    ),
    (
        "gate entries string",
        GATE,
        json.dumps({"ts": 1, "entries_total": "3", "exits_total": 0}).encode(),
        p.WRONG_TYPE,
    ),
    (
        "topic plus wildcard",
        "facility/ewaste/ewaste_bin/bin+1/telemetry",
        bin_payload(),
        p.BAD_TOPIC,
    ),
    ("topic hash wildcard", "facility/ewaste/ewaste_bin/#/telemetry", bin_payload(), p.BAD_TOPIC),
    (
        "topic extra level",
        "facility/ewaste/ewaste_bin/bin/001/telemetry",
        bin_payload(),
        p.BAD_TOPIC,
    ),
    (
        "topic space in id",
        "facility/ewaste/ewaste_bin/bin 001/telemetry",
        bin_payload(),
        p.BAD_TOPIC,
    ),
    (
        "topic uppercase id",
        "facility/ewaste/ewaste_bin/BIN-001/telemetry",
        bin_payload(),
        p.BAD_TOPIC,
    ),
    ("topic wrong prefix", "other/ewaste/ewaste_bin/bin-001/telemetry", bin_payload(), p.BAD_TOPIC),
    (
        "topic wrong channel",
        "facility/ewaste/ewaste_bin/bin-001/events",
        bin_payload(),
        p.BAD_TOPIC,
    ),
    ("topic empty level", "facility//ewaste_bin/bin-001/telemetry", bin_payload(), p.BAD_TOPIC),
    (
        "topic id too long",
        f"facility/ewaste/ewaste_bin/{'b' * 65}/telemetry",
        bin_payload(),
        p.BAD_TOPIC,
    ),
    ("unknown kind", "facility/ewaste/toaster/t-1/telemetry", bin_payload(), p.UNKNOWN_KIND),
    ("status garbage", "facility/ewaste/ewaste_bin/bin-001/status", b"maybe", p.BAD_STATUS),
    ("status empty", "facility/ewaste/ewaste_bin/bin-001/status", b"", p.BAD_STATUS),
]


@pytest.mark.parametrize(
    ("topic", "payload", "code"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_payload_is_rejected_with_its_reason(topic: str, payload: bytes, code: str) -> None:
    result = judge(topic, payload)
    assert isinstance(result, Rejection), result
    assert result.code == code, str(result)
    assert result.code in p.REASON_CODES
    assert len(result.reason) > 10  # a sentence a person can act on, not just a code


def test_the_table_covers_at_least_forty_cases_and_every_reason_code() -> None:
    assert len(BAD) >= 40
    assert {case[3] for case in BAD} == set(p.REASON_CODES)


def test_a_failure_of_the_judge_is_internal_error_logged_never_the_devices_fault(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: EwasteBinTelemetry) -> dict[str, float | int | bool]:
        raise RuntimeError("a bug in the judge")

    monkeypatch.setattr(EwasteBinTelemetry, "values", broken)
    with caplog.at_level(logging.ERROR, logger="common.payloads"):
        result = judge(BIN, bin_payload())
    assert isinstance(result, Rejection)
    assert result.code == p.INTERNAL_ERROR
    assert result.code not in p.REASON_CODES  # none of the device's faults
    assert "RuntimeError" in result.reason
    (record,) = [r for r in caplog.records if r.name == "common.payloads"]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError  # the traceback
    assert record.__dict__["topic"] == BIN


@pytest.mark.parametrize("code", [p.TS_IN_FUTURE, p.INVALID_TS, p.NO_FIELDS])
def test_codes_come_from_pydantic_error_types_not_from_their_wording(code: str) -> None:
    class Model(BaseModel):
        @model_validator(mode="after")
        def _refuse(self) -> Model:
            raise PydanticCustomError(code, "a sentence that names no code at all")

    with pytest.raises(ValidationError) as info:
        Model.model_validate({})
    assert p._rejection_from(info.value).code == code


def test_the_future_bound_is_the_judges_to_set() -> None:
    ahead = bin_payload(ts=NOW_MS + 600_000)
    assert isinstance(judge(BIN, ahead), Rejection)  # the default: 5 minutes
    wider = parse_message(BIN, ahead, TOPICS, now_ms=NOW_MS, max_future_ms=20 * 60_000)
    assert isinstance(wider, p.Reading) and wider.ts_ms == NOW_MS + 600_000
    narrower = parse_message(
        BIN, bin_payload(ts=NOW_MS + 2000), TOPICS, now_ms=NOW_MS, max_future_ms=1000
    )
    assert isinstance(narrower, Rejection) and narrower.code == p.TS_IN_FUTURE


def test_model_raised_reasons_read_as_sentences() -> None:
    future = judge(BIN, bin_payload(ts=NOW_MS + 600_000))
    assert isinstance(future, Rejection)
    assert future.reason == (
        "ts: ts is 600 s ahead of the receiver's clock (limit 300 s, MAX_FUTURE_S) "
        f"(got {NOW_MS + 600_000})"
    )
    empty = judge(METER, json.dumps({"ts": NOW_MS}).encode())
    assert isinstance(empty, Rejection)
    assert empty.reason.startswith("payload: an energy_meter reading needs at least one field")
    garbage = judge(BIN, bin_payload(ts="yesterday"))
    assert isinstance(garbage, Rejection)
    assert garbage.reason.startswith("ts: ts 'yesterday' is not an RFC 3339 timestamp")


def test_rejection_names_the_offending_field() -> None:
    result = judge(BIN, bin_payload(fill_pct=120))
    assert isinstance(result, Rejection)
    assert "fill_pct" in result.reason and "120" in result.reason


def test_good_bin_payload_is_accepted_with_floats_and_bool() -> None:
    result = judge(BIN, bin_payload(weight_kg=12, lid_open=False, capacity_kg=200, extra="x"))
    assert isinstance(result, Reading)
    assert (result.site, result.kind, result.device_id) == ("ewaste", "ewaste_bin", "bin-001")
    assert result.measurement == "ewaste_bin"
    assert result.fields == {
        "weight_kg": 12.0,
        "fill_pct": 40.0,
        "capacity_kg": 200.0,
        "lid_open": False,
    }
    assert isinstance(result.fields["weight_kg"], float)  # one field type forever in InfluxDB
    assert "extra" not in result.fields


def test_rfc3339_and_epoch_ms_give_the_same_instant() -> None:
    a = judge(BIN, bin_payload(ts="2026-11-18T10:00:00.250+09:00"))
    b = judge(BIN, bin_payload(ts=1_794_963_600_250))
    c = judge(BIN, bin_payload(ts="2026-11-18T01:00:00.250Z"))
    assert isinstance(a, Reading) and isinstance(b, Reading) and isinstance(c, Reading)
    assert a.ts_ms == b.ts_ms == c.ts_ms == 1_794_963_600_250


def test_ts_up_to_five_minutes_ahead_and_old_ts_are_accepted() -> None:
    assert isinstance(judge(BIN, bin_payload(ts=NOW_MS + 299_000)), Reading)
    assert isinstance(judge(BIN, bin_payload(ts="2020-01-01T00:00:00Z")), Reading)


def test_matching_device_id_and_seq_are_accepted() -> None:
    result = judge(BIN, bin_payload(device_id="bin-001", seq=7))
    assert isinstance(result, Reading) and result.seq == 7


def test_energy_meter_accepts_any_subset_and_negative_grid() -> None:
    body = {"ts": NOW_MS, "grid_power_w": -1500.5, "pv_energy_wh": 10}
    result = judge(METER, json.dumps(body).encode())
    assert isinstance(result, Reading)
    assert result.measurement == "energy"
    assert result.fields == {"grid_power_w": -1500.5, "pv_energy_wh": 10.0}


def test_visitor_counter_keeps_integers() -> None:
    body = {"ts": NOW_MS, "entries_total": 120, "exits_total": 100, "occupancy": 20}
    result = judge(GATE, json.dumps(body).encode())
    assert isinstance(result, Reading)
    assert result.measurement == "visitors"
    assert result.fields == {"entries_total": 120, "exits_total": 100, "occupancy": 20}
    assert all(type(v) is int for v in result.fields.values())


@pytest.mark.parametrize(
    ("raw", "online"), [(b"online", True), (b"offline", False), (b" Online\n", True)]
)
def test_status_messages(raw: bytes, online: bool) -> None:
    result = judge("facility/nzc/energy_meter/nzc-meter-1/status", raw)
    assert isinstance(result, StatusReading)
    assert result.online is online and result.ts_ms == NOW_MS
    assert result.measurement == "device_status"


def test_payload_at_the_size_limit_is_judged_on_content() -> None:
    base = bin_payload(pad="")
    exact = bin_payload(pad="x" * (p.MAX_PAYLOAD_BYTES - len(base)))
    assert len(exact) == p.MAX_PAYLOAD_BYTES
    assert isinstance(judge(BIN, exact), Reading)
    assert isinstance(judge(BIN, exact + b" "), Rejection)


def test_parse_message_never_raises_on_random_bytes() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(
        st.binary(max_size=300), st.sampled_from([BIN, METER, GATE, "a/b", "facility/x/y/z/status"])
    )
    def check(raw: bytes, topic: str) -> None:
        result = judge(topic, raw)
        assert isinstance(result, Reading | StatusReading | Rejection)

    check()
