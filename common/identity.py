"""Who may publish as whom: a device speaks only as the (site, kind, id) the registry gives it.

The broker's ACL binds a device's credentials to its id level only, so the site and kind
levels of its topics are the device's own choice. ``DeviceGate`` judges them against
``config/devices.yaml``: an identity the registry does not have is rejected (``reject``, the
compose default) or let through (``accept``, for labs and synthetic fleets), and then counted,
at most ``max_unknown`` of them (each one is a series in InfluxDB and state in the alerts
service), so a device cannot grow either without bound.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from common.devices import Device, Registry
from common.payloads import UNKNOWN_DEVICE, UNKNOWN_DEVICE_LIMIT, Rejection

__all__ = ["DEFAULT_MAX_UNKNOWN", "UNKNOWN_DEVICE_POLICIES", "DeviceGate", "UnknownDevices"]

UnknownDevices = Literal["reject", "accept"]
UNKNOWN_DEVICE_POLICIES: Final[tuple[str, ...]] = get_args(UnknownDevices)
DEFAULT_MAX_UNKNOWN: Final = 10_000


class DeviceGate:
    """Judges the identity of a device topic; call from one thread (or under one lock)."""

    def __init__(
        self,
        registry: Registry | None,
        unknown: UnknownDevices,
        max_unknown: int = DEFAULT_MAX_UNKNOWN,
    ) -> None:
        if unknown == "reject" and registry is None:
            raise ValueError("rejecting unknown devices needs a device registry")
        self.registry = registry
        self.unknown = unknown
        self.max_unknown = max_unknown
        self._unknown_seen: set[tuple[str, str, str]] = set()

    @property
    def unknown_seen(self) -> int:
        """Distinct unregistered (site, kind, id) let through so far (``accept``)."""
        return len(self._unknown_seen)

    def check(self, site: str, kind: str, device_id: str) -> Rejection | None:
        """None if this identity may publish, else why not (never raises)."""
        registry = self.registry
        device = registry.device(device_id) if registry is not None else None
        if device is not None and device.site == site and device.kind == kind:
            return None
        if self.unknown == "reject":
            return Rejection(UNKNOWN_DEVICE, _why(site, kind, device_id, device))
        key = (site, kind, device_id)
        if key in self._unknown_seen:
            return None
        if len(self._unknown_seen) >= self.max_unknown:
            return Rejection(
                UNKNOWN_DEVICE_LIMIT,
                f"{_why(site, kind, device_id, device)}, and {self.max_unknown} unregistered "
                "devices are already accepted (UNKNOWN_DEVICES_MAX)",
            )
        self._unknown_seen.add(key)
        return None


def _why(site: str, kind: str, device_id: str, device: Device | None) -> str:
    if device is not None:
        return (
            f"device {device_id!r} is registered at site {device.site!r} as kind "
            f"{device.kind!r}, not at site {site!r} as kind {kind!r}"
        )
    return f"device {device_id!r} is not in the device registry"
