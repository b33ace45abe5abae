"""The end-of-run summary: printed for people, written as JSON for tests and CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.timestamps import ms_to_iso
from devices.simulator.engine import Engine
from devices.simulator.faults import EXPECTED_CODE


def build_summary(engine: Engine, wall_s: float) -> dict[str, Any]:
    tally, injector, fleet = engine.tally, engine.injector, engine.fleet
    overflow = engine.overflow_minutes()
    return {
        "scenario": engine.scenario.name,
        "seed": engine.seed,
        "start": ms_to_iso(engine.start_ms),
        "end": ms_to_iso(engine.end_ms),
        "simulated_until": ms_to_iso(engine.now_ms),
        "wall_seconds": round(wall_s, 3),
        "devices": len(engine.devices),
        "messages": dict(sorted(tally.telemetry.items())),
        "messages_total": sum(tally.telemetry.values()),
        "status_messages": tally.status,
        "dispatch_status_messages": tally.dispatch_status,
        "suppressed_while_silent": tally.suppressed,
        "faults": {name: injector.injected[name] for name in injector.specs},
        "expected_rejections": dict(sorted(injector.expected_rejections.items())),
        # fault type -> reason code -> count, as common.payloads judges the faulty payloads
        "rejections_by_fault": {
            name: dict(sorted(codes.items())) for name, codes in injector.codes_by_fault.items()
        },
        "accepted_faults": {
            name: n for name, n in injector.injected.items() if EXPECTED_CODE[name] is None
        },
        "events": dict(sorted(tally.events.items())),
        "dispatches": dict(sorted(tally.dispatches.items())),
        "bins_collected": fleet.bins_collected,
        "collected_kg": round(fleet.collected_kg, 2),
        "overflow_minutes": overflow,
        "overflow_minutes_total": round(sum(overflow.values()), 1),
    }


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"scenario {summary['scenario']} (seed {summary['seed']}): "
        f"{summary['start']} -> {summary['simulated_until']}, "
        f"{summary['devices']} devices, {summary['wall_seconds']} s wall time",
        "messages: "
        + (", ".join(f"{k} {v}" for k, v in summary["messages"].items()) or "none")
        + f" (total {summary['messages_total']}, status {summary['status_messages']}, "
        f"dispatch status {summary['dispatch_status_messages']})",
    ]
    faults = {k: v for k, v in summary["faults"].items() if v}
    if faults:
        lines.append("faults injected: " + ", ".join(f"{k} {v}" for k, v in faults.items()))
        lines.append(
            "expected rejections: "
            + ", ".join(f"{k} {v}" for k, v in summary["expected_rejections"].items())
        )
    lines.append(
        f"bins collected: {summary['bins_collected']} ({summary['collected_kg']} kg); "
        f"overflow: {summary['overflow_minutes_total']} bin-minutes "
        f"in {len(summary['overflow_minutes'])} bins"
    )
    return "\n".join(lines)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
