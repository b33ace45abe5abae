"""Topics of the contract: built, parsed, and invalid ones unrepresentable."""

from __future__ import annotations

import pytest

from common.topics import DeviceTopic, TopicError, Topics

T = Topics("facility")


def test_builds_every_topic_of_the_contract() -> None:
    assert (
        T.telemetry("ewaste", "ewaste_bin", "bin-001")
        == "facility/ewaste/ewaste_bin/bin-001/telemetry"
    )
    assert T.status("nzc", "energy_meter", "m1") == "facility/nzc/energy_meter/m1/status"
    assert T.alert("bin_full", "ewaste", "bin-001") == "facility/alerts/bin_full/ewaste/bin-001"
    assert T.alert_active("bin_full", "ewaste", "bin-001") == (
        "facility/alerts/active/bin_full/ewaste/bin-001"
    )
    assert T.dispatch_requests() == "facility/dispatch/requests"
    assert T.dispatch_status("d-42") == "facility/dispatch/d-42/status"
    assert T.deadletter("ingest") == "facility/deadletter/ingest"


def test_subscription_filters_use_wildcards_only_there() -> None:
    assert T.all_telemetry() == "facility/+/+/+/telemetry"
    assert T.all_status() == "facility/+/+/+/status"
    assert T.all_active_alerts() == "facility/alerts/active/#"


def test_parse_round_trips() -> None:
    topic = T.telemetry("uac", "visitor_counter", "uac-gate-main")
    parsed = T.parse_device_topic(topic)
    assert parsed == DeviceTopic("facility", "uac", "visitor_counter", "uac-gate-main", "telemetry")
    assert str(parsed) == topic
    assert T.parse_dispatch_status("facility/dispatch/d-1/status") == "d-1"
    assert T.parse_active_alert("facility/alerts/active/r/s/d") == ("r", "s", "d")


def test_multi_level_prefix() -> None:
    t = Topics("city/gm")
    assert t.parse_device_topic("city/gm/a/b/c/status").device_id == "c"


@pytest.mark.parametrize(
    "bad_id", ["", "+", "#", "a/b", "a b", "Bin", "-x", "_x", "x" * 65, "é", "a\x00", "a+b", "a#"]
)
def test_invalid_ids_raise(bad_id: str) -> None:
    with pytest.raises(TopicError, match="invalid"):
        T.telemetry("ewaste", "ewaste_bin", bad_id)
    with pytest.raises(TopicError):
        T.alert(bad_id, "ewaste", "bin-001")
    with pytest.raises(TopicError):
        DeviceTopic("facility", bad_id, "ewaste_bin", "bin-1", "telemetry")


@pytest.mark.parametrize("prefix", ["", "a/+", "#", "a//b", "$SYS", "/a"])
def test_invalid_prefix_raises(prefix: str) -> None:
    with pytest.raises(TopicError):
        Topics(prefix)


def test_reserved_levels_cannot_collide() -> None:
    with pytest.raises(TopicError, match="reserved"):
        T.telemetry("alerts", "ewaste_bin", "x")
    with pytest.raises(TopicError, match="reserved"):
        T.dispatch_status("requests")
    with pytest.raises(TopicError, match="reserved"):
        T.alert("active", "s", "d")


@pytest.mark.parametrize(
    "topic",
    [
        "facility/a/b/c",
        "facility/a/b/c/d/telemetry",
        "facility/a/b/c/other",
        "other/a/b/c/telemetry",
        "facility/a/+/c/telemetry",
    ],
)
def test_parse_rejects_topics_outside_the_scheme(topic: str) -> None:
    with pytest.raises(TopicError):
        T.parse_device_topic(topic)
