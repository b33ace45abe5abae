"""``absence``: a device that sent no telemetry for ``after``, or said ``offline``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from common.devices import Registry
from common.payloads import Reading, StatusReading
from services.alerts.config import AbsenceSpec
from services.alerts.rules.base import BaseRule, Signal, Verdict


@dataclass(slots=True)
class _Seen:
    site: str
    kind: str
    last_ms: int | None
    absent: bool = False


class AbsenceRule(BaseRule):
    spec: AbsenceSpec
    judges_liveness = True  # any reading, even a superseded one, proves the device alive

    def __init__(self, spec: AbsenceSpec, registry: Registry | None) -> None:
        super().__init__(spec, registry)
        self.seen: dict[str, _Seen] = {}
        # Registered devices are expected even if they never spoke; their clock starts at
        # the first moment the stream shows us (the first tick).
        for device in registry.devices if registry else ():
            zone = registry.zone_of(device.id) if registry else None
            if spec.select.matches(device.site, device.kind, device.id, zone):
                self.seen[device.id] = _Seen(device.site, device.kind, None)

    def observe(self, reading: Reading) -> Iterable[Signal]:
        seen = self.seen.get(reading.device_id)
        if seen is None:
            seen = self.seen[reading.device_id] = _Seen(reading.site, reading.kind, None)
        if seen.last_ms is None or reading.ts_ms > seen.last_ms:
            seen.last_ms = reading.ts_ms
        if not seen.absent:
            return ()
        seen.absent = False
        return (
            Signal.about(
                reading, Verdict.CLEAR, 0.0, self.spec.after_ms / 1000, "device reports again"
            ),
        )

    def on_status(self, status: StatusReading) -> Iterable[Signal]:
        if not self.spec.offline_status:
            return ()
        seen = self.seen.setdefault(status.device_id, _Seen(status.site, status.kind, None))
        if status.online:
            if not seen.absent:
                return ()
            seen.absent = False
            seen.last_ms = max(seen.last_ms or 0, status.ts_ms)
            verdict, message = Verdict.CLEAR, "device is online"
        else:
            seen.absent = True
            verdict, message = Verdict.FIRE, "device reported offline (status)"
        return (
            Signal(
                status.site,
                status.device_id,
                status.kind,
                status.ts_ms,
                verdict,
                None,
                self.spec.after_ms / 1000,
                message,
            ),
        )

    def adopt(self, site: str, kind: str, device_id: str) -> None:
        # Only an absent device is cleared by its next reading or ``online``; without this a
        # device back while alerts was down (retained ``online``, fresh readings) would keep
        # its restored alert firing for ever.
        seen = self.seen.setdefault(device_id, _Seen(site, kind, None))
        seen.absent = True

    def tick(self, now_ms: int) -> Iterable[Signal]:
        out = []
        for device_id, seen in self.seen.items():
            if seen.last_ms is None:
                seen.last_ms = now_ms
                continue
            silent_ms = now_ms - seen.last_ms
            if not seen.absent and silent_ms >= self.spec.after_ms:
                seen.absent = True
                out.append(
                    Signal(
                        seen.site,
                        device_id,
                        seen.kind,
                        now_ms,
                        Verdict.FIRE,
                        silent_ms / 1000,
                        self.spec.after_ms / 1000,
                        f"no telemetry for {silent_ms / 60_000:.1f} min",
                    )
                )
        return out
