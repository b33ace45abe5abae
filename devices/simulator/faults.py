"""Fault injection: which telemetry message gets which fault, and how it is corrupted.

Every injected fault is counted by type, and the rejection it should cause is judged with
``common.payloads.parse_message`` itself, so the summary says what the ingest must refuse.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from common.kinds import KINDS
from common.payloads import Rejection, parse_message
from common.timestamps import ms_to_iso
from common.topics import Topics
from devices.simulator.models import MODEL_KINDS
from devices.simulator.models.base import Fields
from devices.simulator.rand import stream
from devices.simulator.scenario import FAULT_TYPES, FaultSpec

# What the contract says a receiver does with each fault (None: accepted, not rejected).
EXPECTED_CODE: dict[str, str | None] = {
    "malformed_json": "invalid_json",
    "missing_field": "missing_field",
    "wrong_type": "wrong_type",
    "not_finite": "not_finite",
    "out_of_range": "out_of_range",
    "device_id_mismatch": "device_id_mismatch",
    "duplicate": None,
    "out_of_order": None,
    "clock_skew": "ts_in_future",
    "silent": None,
    "burst": None,
}


def encode(payload: dict[str, Any]) -> bytes:
    """Deterministic compact JSON (insertion order; Python's float repr is exact)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=True).encode()


class FaultInjector:
    """Picks faults for messages (``count`` spread over the window, or a per-message ``rate``)
    and counts them; deterministic for a given seed."""

    def __init__(
        self, faults: Mapping[Any, FaultSpec], seed: int, start_ms: int, end_ms: int, topics: Topics
    ) -> None:
        self.specs: dict[str, FaultSpec] = {
            name: faults[name] for name in FAULT_TYPES if name in faults
        }
        self.topics = topics
        self._rng = stream(seed, "faults")
        span = max(1, end_ms - start_ms)
        self._due: dict[str, list[int]] = {}
        for name, spec in self.specs.items():
            times = stream(seed, "faults", name)
            # Keep the first and last 5 % clean so a silent device can come back in the window.
            due = [start_ms + int(span * times.uniform(0.05, 0.9)) for _ in range(spec.count)]
            self._due[name] = sorted(due)
        self.injected: Counter[str] = Counter()
        self.expected_rejections: Counter[str] = Counter()
        self.codes_by_fault: dict[str, Counter[str]] = {}

    def pick(self, device_id: str, now_ms: int) -> str | None:
        """The fault (if any) for this device's message at ``now_ms``; counts it."""
        for name, spec in self.specs.items():
            if spec.devices is not None and device_id not in spec.devices:
                continue
            due = self._due[name]
            if due and due[0] <= now_ms:
                due.pop(0)
                self.injected[name] += 1
                return name
            if spec.rate and self._rng.random() < spec.rate:
                self.injected[name] += 1
                return name
        return None

    def corrupt(
        self, fault: str, kind: str, device_id: str, ts_ms: int, seq: int, fields: Fields
    ) -> bytes:
        """The faulty payload for a rejecting fault type."""
        payload: dict[str, Any] = {"ts": ms_to_iso(ts_ms), "seq": seq, **fields}
        model = MODEL_KINDS.get(kind)
        target = model.fault_field if model else next(iter(fields), "ts")
        if fault == "malformed_json":
            return encode(payload)[:-7]  # cut off mid-value, as a dropped TCP segment would
        if fault == "missing_field":
            if kind in KINDS and not KINDS[kind].telemetry.required_fields:
                payload = {"ts": payload["ts"], "seq": seq}  # nothing to store at all
            else:
                payload.pop(target, None)
        elif fault == "wrong_type":
            payload[target] = str(payload.get(target, 0))
        elif fault == "not_finite":
            payload[target] = float("nan") if seq % 2 else float("inf")
        elif fault == "out_of_range":
            name, value = model.out_of_range if model else (target, -1)
            payload[name] = value
        elif fault == "device_id_mismatch":
            payload["device_id"] = f"{device_id}-x"
        elif fault == "clock_skew":
            spec = self.specs[fault]
            payload["ts"] = ms_to_iso(ts_ms + int(spec.skew_s * 1000))
        return encode(payload)

    def judge(self, fault: str, topic: str, payload: bytes, now_ms: int) -> str | None:
        """The reason code the contract's validator gives (None if accepted); counted."""
        result = parse_message(topic, payload, self.topics, now_ms=now_ms)
        if isinstance(result, Rejection):
            self.expected_rejections[result.code] += 1
            self.codes_by_fault.setdefault(fault, Counter())[result.code] += 1
            return result.code
        return None

    def spec(self, fault: str) -> FaultSpec:
        return self.specs[fault]
