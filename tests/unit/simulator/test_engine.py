"""The engine as a whole: determinism, contract-valid payloads, faults, scenario outcomes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

from common.payloads import Reading, Rejection, StatusReading, parse_message
from devices.simulator.expectations import accepted_series, check_all
from devices.simulator.scenario import Event
from tests.unit.simulator.support import TOPICS, registry, run_engine, scenario

# Far enough ahead that only the injected clock skew (20 years) counts as "in the future".
NOW_MS = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)


def test_same_seed_gives_byte_identical_message_sequence() -> None:
    sc = scenario(duration_s=4 * 3600)
    _, first = run_engine(sc)
    _, second = run_engine(sc)
    _, other_seed = run_engine(sc, seed=99)
    assert len(first.messages) > 1000
    assert first.messages == second.messages
    assert [m.payload for m in first.telemetry()] != [m.payload for m in other_seed.telemetry()]


def test_every_unfaulted_message_satisfies_the_contract() -> None:
    engine, out = run_engine(scenario(faults={}, duration_s=6 * 3600))
    kinds: Counter[str] = Counter()
    for message in out.messages:
        result = parse_message(message.topic, message.payload, TOPICS, now_ms=NOW_MS)
        assert not isinstance(result, Rejection), (message, result)
        if isinstance(result, Reading):
            kinds[result.kind] += 1
            assert not message.retain
        else:
            assert isinstance(result, StatusReading) and message.retain
    assert set(kinds) == {"energy_meter", "visitor_counter", "ewaste_bin"}
    assert dict(kinds) == dict(engine.tally.telemetry)


def test_injected_faults_are_counted_and_rejected_as_the_summary_says() -> None:
    engine, out = run_engine(scenario())
    injected = engine.injector.injected
    for name, spec in scenario().faults.items():
        assert injected[name] == spec.count, name
    rejected: Counter[str] = Counter()
    for message in out.telemetry():
        result = parse_message(message.topic, message.payload, TOPICS, now_ms=NOW_MS)
        if isinstance(result, Rejection):
            rejected[result.code] += 1
    assert rejected == engine.injector.expected_rejections
    rejecting = ("malformed_json", "missing_field", "wrong_type", "not_finite", "out_of_range",
                 "device_id_mismatch", "clock_skew")  # fmt: skip
    assert sum(rejected.values()) == sum(injected[name] for name in rejecting)
    assert rejected["invalid_json"] == injected["malformed_json"]
    assert rejected["ts_in_future"] == injected["clock_skew"]
    assert rejected["device_id_mismatch"] == injected["device_id_mismatch"]


def test_duplicates_bursts_and_late_messages_are_valid_but_out_of_line() -> None:
    engine, out = run_engine(scenario())
    payloads = [m.payload for m in out.telemetry()]
    assert len(payloads) - len(set(payloads)) >= engine.injector.injected["duplicate"]
    late = 0
    last_ts: dict[str, str] = {}
    for message in out.telemetry():
        try:
            ts = json.loads(message.payload)["ts"]
        except (ValueError, KeyError):
            continue
        if message.topic in last_ts and ts < last_ts[message.topic]:
            late += 1
        last_ts[message.topic] = max(ts, last_ts.get(message.topic, ts))
    assert late >= engine.injector.injected["out_of_order"]
    burst_topic = TOPICS.telemetry("ewaste", "ewaste_bin", "bin-030")
    assert sum(m.topic == burst_topic for m in out.telemetry()) >= 144 + 9


def test_ci_smoke_produces_its_expected_outcomes() -> None:
    sc = scenario()
    engine, out = run_engine(sc)
    series = accepted_series(((m.topic, m.payload) for m in out.telemetry()), TOPICS, NOW_MS)
    outcomes = check_all(sc.expect, series, registry())
    assert len(outcomes) == 6
    assert all(o.ok for o in outcomes), [o.detail for o in outcomes if not o.ok]
    assert engine.fleet.bins_collected == 2
    assert engine.overflow_minutes().get("bin-005", 0) > 60


def test_expectations_fail_when_the_outcome_is_missing() -> None:
    sc = scenario(events=(), initial={})
    _, out = run_engine(sc)
    series = accepted_series(((m.topic, m.payload) for m in out.telemetry()), TOPICS, NOW_MS)
    by_type = {o.expectation.type: o.ok for o in check_all(sc.expect, series, registry())}
    assert by_type["device_silent"] is False
    assert by_type["bin_collected"] is False
    assert by_type["occupancy_above_capacity"] is False


def test_a_scripted_event_goes_before_a_report_due_at_the_same_instant() -> None:
    """Heap ties: events, then trucks, then reports. A silence starting exactly when bin-001's
    first report is due swallows that report."""
    base = scenario(devices=("bin-001",), faults={}, events=[], expect=[])
    _, quiet = run_engine(base)
    first = quiet.telemetry()[0]
    first_ts = json.loads(first.payload)["ts"]
    assert base.start is not None
    due_s = (datetime.fromisoformat(first_ts) - base.start).total_seconds()
    silence = Event(type="silence", device="bin-001", at=due_s, duration_s=600)
    engine, out = run_engine(base.model_copy(update={"events": [silence]}))
    assert engine.tally.suppressed >= 1
    later = [json.loads(m.payload)["ts"] for m in out.telemetry()]
    assert first_ts not in later
