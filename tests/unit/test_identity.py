"""DeviceGate: a device speaks only as the (site, kind, id) the registry gives it; unknown
identities are rejected, or accepted up to a bound, and the judge does it before the payload."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.devices import load_registry
from common.identity import DeviceGate
from common.payloads import (
    IDENTITY_CODES,
    REASON_CODES,
    UNKNOWN_DEVICE,
    UNKNOWN_DEVICE_LIMIT,
    Reading,
    Rejection,
    StatusReading,
    parse_message,
)
from common.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = load_registry(ROOT / "config" / "devices.yaml")
TOPICS = Topics("facility")
NOW_MS = 1_795_000_000_000
BODY = b'{"ts": %d, "weight_kg": 3, "fill_pct": 10}' % (NOW_MS - 1000)


def judge(topic: str, payload: bytes, gate: DeviceGate) -> object:
    return parse_message(topic, payload, TOPICS, now_ms=NOW_MS, gate=gate)


def test_a_registered_device_passes_under_its_own_site_and_kind() -> None:
    gate = DeviceGate(REGISTRY, "reject")
    assert isinstance(
        judge(TOPICS.telemetry("ewaste", "ewaste_bin", "bin-001"), BODY, gate), Reading
    )
    status = judge(TOPICS.status("ewaste", "ewaste_bin", "bin-001"), b"online", gate)
    assert isinstance(status, StatusReading)


@pytest.mark.parametrize(
    ("site", "kind", "device", "named"),
    [
        ("fake-1", "ewaste_bin", "bin-001", "registered at site 'ewaste' as kind 'ewaste_bin'"),
        ("ewaste", "energy_meter", "bin-001", "registered at site 'ewaste' as kind 'ewaste_bin'"),
        ("ewaste", "ewaste_bin", "bin-999", "'bin-999' is not in the device registry"),
    ],
)
def test_reject_dead_letters_readings_and_statuses_of_identities_not_in_the_registry(
    site: str, kind: str, device: str, named: str
) -> None:
    gate = DeviceGate(REGISTRY, "reject")
    for topic, payload in (
        (TOPICS.telemetry(site, kind, device), BODY),
        (TOPICS.status(site, kind, device), b"online"),
    ):
        result = judge(topic, payload, gate)
        assert isinstance(result, Rejection), result
        assert result.code == UNKNOWN_DEVICE
        assert named in result.reason


def test_identity_is_judged_before_the_payload() -> None:
    gate = DeviceGate(REGISTRY, "reject")
    result = judge(TOPICS.telemetry("fake", "ewaste_bin", "bin-001"), b"\xff not json", gate)
    assert isinstance(result, Rejection) and result.code == UNKNOWN_DEVICE


def test_accept_lets_unknown_identities_through_up_to_the_bound_and_counts_them() -> None:
    gate = DeviceGate(REGISTRY, "accept", max_unknown=3)
    sites = [f"lab-{i}" for i in range(5)]
    results = [judge(TOPICS.telemetry(s, "ewaste_bin", "bin-001"), BODY, gate) for s in sites]
    assert [isinstance(r, Reading) for r in results] == [True, True, True, False, False]
    assert all(r.code == UNKNOWN_DEVICE_LIMIT for r in results[3:] if isinstance(r, Rejection))
    assert gate.unknown_seen == 3
    # One already let through stays accepted; registered devices never count.
    assert isinstance(
        judge(TOPICS.status("lab-0", "ewaste_bin", "bin-001"), b"online", gate), StatusReading
    )
    assert isinstance(
        judge(TOPICS.telemetry("ewaste", "ewaste_bin", "bin-002"), BODY, gate), Reading
    )
    assert gate.unknown_seen == 3


def test_accept_without_a_registry_counts_every_device_and_reject_needs_one() -> None:
    gate = DeviceGate(None, "accept", max_unknown=1)
    assert isinstance(
        judge(TOPICS.telemetry("ewaste", "ewaste_bin", "bin-001"), BODY, gate), Reading
    )
    assert gate.unknown_seen == 1
    with pytest.raises(ValueError, match="registry"):
        DeviceGate(None, "reject")


def test_identity_codes_are_their_own_vocabulary() -> None:
    assert {UNKNOWN_DEVICE, UNKNOWN_DEVICE_LIMIT} == IDENTITY_CODES
    assert not IDENTITY_CODES & REASON_CODES
