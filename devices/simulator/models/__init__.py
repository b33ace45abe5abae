"""Device models: one module per kind behind the small :class:`Model` protocol.

The model of kind ``k`` is ``MODEL`` in ``models/k.py`` (a :class:`KindModel`); every kind
declared in ``common.kinds`` must have one, so a missing model fails at import, not mid-run.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Final

from common.kinds import KINDS
from devices.simulator.models.base import KindModel, Model, ModelContext
from devices.simulator.models.energy_meter import EnergyMeter
from devices.simulator.models.ewaste_bin import EwasteBin
from devices.simulator.models.visitor_counter import VisitorCounter


def _model_of(kind: str) -> KindModel:
    model = importlib.import_module(f"{__name__}.{kind}").MODEL
    if not isinstance(model, KindModel):
        raise TypeError(f"{__name__}.{kind}.MODEL is not a KindModel")
    return model


MODEL_KINDS: Final[Mapping[str, KindModel]] = {kind: _model_of(kind) for kind in KINDS}


def build_model(ctx: ModelContext) -> Model:
    return MODEL_KINDS[ctx.device.kind].build(ctx)


__all__ = [
    "MODEL_KINDS",
    "EnergyMeter",
    "EwasteBin",
    "KindModel",
    "Model",
    "ModelContext",
    "VisitorCounter",
]
