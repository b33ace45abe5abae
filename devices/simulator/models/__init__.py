"""Device models: one module per kind behind the small :class:`Model` protocol.

Adding a kind touches its module and one line in :data:`MODEL_KINDS`.
"""

from __future__ import annotations

from devices.simulator.models.base import Model, ModelContext
from devices.simulator.models.energy_meter import EnergyMeter
from devices.simulator.models.ewaste_bin import EwasteBin
from devices.simulator.models.visitor_counter import VisitorCounter

MODEL_KINDS: dict[str, type[EnergyMeter] | type[VisitorCounter] | type[EwasteBin]] = {
    "energy_meter": EnergyMeter,
    "visitor_counter": VisitorCounter,
    "ewaste_bin": EwasteBin,
}


def build_model(ctx: ModelContext) -> Model:
    return MODEL_KINDS[ctx.device.kind](ctx)


__all__ = ["MODEL_KINDS", "EnergyMeter", "EwasteBin", "Model", "ModelContext", "VisitorCounter"]
