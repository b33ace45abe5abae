"""AlertsCore judges identity through the shared gate: with ``unknown_devices="reject"`` a
device varying its site level raises no alert and leaves no state behind."""

from __future__ import annotations

from common.payloads import UNKNOWN_DEVICE
from services.alerts.core import AlertsCore, CoreSettings, Inbound, Notify, Rejected
from tests.unit.alerts.helpers import NONCE, T0, TOPICS, alerts_core, bin_full_rules

BIN_FULL = bin_full_rules()


def synced(settings: CoreSettings) -> AlertsCore:
    core = alerts_core(BIN_FULL, settings)
    core.receive(Inbound(TOPICS.alerts_sync(), NONCE.encode(), 0.0), T0)
    return core


def full_bin(site: str) -> Inbound:
    body = b'{"ts": %d, "fill_pct": 95, "weight_kg": 30}' % T0
    return Inbound(TOPICS.telemetry(site, "ewaste_bin", "bin-001"), body, 0.0)


def test_rejecting_unknown_devices_keeps_fake_sites_out_of_the_rule_engine() -> None:
    core = synced(CoreSettings(unknown_devices="reject"))
    for i in range(30):
        out = core.receive(full_bin(f"fake-{i}"), T0)
        assert len(out) == 1 and isinstance(out[0], Rejected)
        assert out[0].rejection.code == UNKNOWN_DEVICE
    assert core.pending_count() + core.firing_count() == 0
    status = Inbound(TOPICS.status("fake-x", "ewaste_bin", "bin-001"), b"offline", 0.0)
    [rejected] = core.receive(status, T0)
    assert isinstance(rejected, Rejected) and rejected.rejection.code == UNKNOWN_DEVICE
    # The registered identity is still judged.
    assert any(isinstance(e, Notify) for e in core.receive(full_bin("ewaste"), T0))


def test_accepting_unknown_devices_is_bounded() -> None:
    core = synced(CoreSettings(unknown_devices="accept", unknown_devices_max=5))
    judged = [core.receive(full_bin(f"lab-{i}"), T0) for i in range(8)]
    assert [isinstance(out[0], Rejected) for out in judged] == [False] * 5 + [True] * 3
