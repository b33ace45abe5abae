"""Bins that report fill only (lid distance sensors): the desk plans them with kg estimated
from fill x volume x bulk density, marks those stops estimated, and sees their emptying in a
fall of the fill instead of the weight."""

from __future__ import annotations

from common.payloads import Reading
from services.alerts.dispatch.desk import DEFAULT_BULK_DENSITY_KG_L, DispatchDesk
from tests.unit.alerts.helpers import HOUR, MIN, T0, bin_reading, engine, registry


def fill_only(device: str, ts_ms: int, fill: float) -> Reading:
    return Reading("ewaste", "ewaste_bin", device, ts_ms, None, {"fill_pct": fill})


def desk() -> DispatchDesk:
    return DispatchDesk(registry(), opportunistic_pct=70, timeout_ms=6 * HOUR)


def test_bin_without_weight_is_planned_with_an_estimated_load() -> None:
    d = desk()
    d.observe(fill_only("bin-001", T0, 95))  # apt_large: 1100 l
    d.observe(bin_reading("bin-002", T0, 80))  # weighed: 240 kg
    d.want("bin-001")
    request = d.plan(T0).requests[0]
    stops = {s.device_id: s for s in request.stops}
    estimated = 0.95 * 1100 * DEFAULT_BULK_DENSITY_KG_L
    assert stops["bin-001"].weight_estimated
    assert stops["bin-001"].est_weight_kg == round(estimated, 1)
    assert not stops["bin-002"].weight_estimated
    assert stops["bin-002"].est_weight_kg == 240
    assert request.est_load_kg == round(estimated + 240, 1)
    planned = d.plan(T0 + MIN).points  # nothing new to plan
    assert planned == []


def test_fall_of_the_fill_completes_a_fill_only_bins_dispatch() -> None:
    d = desk()
    d.observe(fill_only("bin-001", T0, 95))
    d.want("bin-001")
    request = d.plan(T0).requests[0]
    assert d.observe(fill_only("bin-001", T0 + MIN, 85)).collected_bins == []  # settling
    done = d.observe(fill_only("bin-001", T0 + HOUR, 3))
    assert done.closed == [request.dispatch_id]
    fields = done.points[-1][2]
    assert fields["state"] == "completed"
    assert fields["weight_estimated"] is True
    assert fields["collected_kg"] == round((85 - 3) / 100 * 1100 * DEFAULT_BULK_DENSITY_KG_L, 1)


TILTED = """
rules:
  - name: bin_tilted
    type: threshold
    select: {kind: ewaste_bin}
    field: tilted
    when: ">= 1"
"""


def test_a_sensors_tilt_flag_is_alertable_by_a_threshold_rule() -> None:
    eng = engine(TILTED)
    upright = Reading(
        "ewaste", "ewaste_bin", "bin-001", T0, None, {"fill_pct": 40, "tilted": False}
    )
    tipped = Reading(
        "ewaste", "ewaste_bin", "bin-001", T0 + MIN, None, {"fill_pct": 40, "tilted": True}
    )
    assert eng.handle(upright) == []
    (fired,) = eng.handle(tipped)
    assert (fired.event.state, fired.event.rule, fired.event.value) == ("firing", "bin_tilted", 1.0)


def test_a_fill_only_bins_collection_point_marks_its_kg_estimated() -> None:
    d = desk()
    d.observe(fill_only("bin-001", T0, 95))
    (point,) = d.observe(fill_only("bin-001", T0 + HOUR, 3)).points
    assert point[0] == "collection" and point[3] == T0 + HOUR
    assert point[2] == {
        "kg": (95 - 3) / 100 * 1100 * DEFAULT_BULK_DENSITY_KG_L,
        "weight_estimated": True,
    }
