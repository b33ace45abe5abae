"""Simulator load-mode benchmark: QoS 1 msg/s from one process into a local Mosquitto.

Runs ``facility-simulator``'s load mode (the lean pre-encoded publisher) and, as the baseline
measured in the same run, the same load through paho; reports medians and the ratio.

Run: ``python -m scripts.bench.simulator_load [--repeats 3] [-n 200000] [--devices 1000]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any

from common.settings import load_settings
from devices.simulator.load import run_fast, run_paho
from devices.simulator.settings import SimulatorSettings
from tests.servers import MosquittoServer

ROOT = Path(__file__).resolve().parents[2]


def _settings(url: str, protocol: str) -> SimulatorSettings:
    return load_settings(
        SimulatorSettings,
        mqtt_url=url,
        mqtt_client_id=None,
        mqtt_protocol=protocol,
        devices_file=ROOT / "config" / "devices.yaml",
    )


def run(repeats: int = 3, messages: int = 200_000, devices: int = 1000) -> dict[str, Any]:
    """Median msg/s of ``repeats`` runs per publisher (paho gets a quarter of the messages)."""
    stop = threading.Event()
    rates: dict[str, list[float]] = {"fast_v5": [], "fast_v311": [], "paho_v5": []}
    with (
        tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp,
        MosquittoServer(Path(tmp) / "mqtt") as broker,
    ):
        for _ in range(repeats):
            v5, v311 = _settings(broker.url, "5"), _settings(broker.url, "3.1.1")
            rates["fast_v5"].append(run_fast(v5, devices, 0.0, messages, None, stop).rate)
            rates["fast_v311"].append(run_fast(v311, devices, 0.0, messages, None, stop).rate)
            paho = run_paho(v5, devices, 0.0, max(1000, messages // 4), None, stop)
            rates["paho_v5"].append(paho.rate)
    medians = {name: round(statistics.median(values)) for name, values in rates.items()}
    return {
        "benchmark": "simulator_load",
        "qos": 1,
        "devices": devices,
        "messages_per_run": messages,
        "repeats": repeats,
        "msg_per_s_median": medians,
        "msg_per_s_runs": {k: [round(v) for v in vals] for k, vals in rates.items()},
        "ratio_fast_to_paho": round(medians["fast_v5"] / max(1, medians["paho_v5"]), 1),
        "target_msg_per_s": 20_000,
        "meets_target": medians["fast_v5"] >= 20_000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-n", "--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1000)
    args = parser.parse_args()
    result = run(args.repeats, args.messages, args.devices)
    print(json.dumps(result, indent=2))
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
