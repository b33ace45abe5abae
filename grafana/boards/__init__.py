"""One module per dashboard; each has ``UID`` and ``build(registry) -> Dashboard`` builder."""

from __future__ import annotations

from types import ModuleType

from grafana.boards import alerts, art_center, cafe, ewaste, pipeline

# File name (without .json) -> dashboard module, in the order managers see them listed.
BOARDS: dict[str, ModuleType] = {
    "nzc-energy": cafe,
    "uac-visitors": art_center,
    "ewaste-collection": ewaste,
    "alerts-dispatch": alerts,
    "pipeline-health": pipeline,
}
