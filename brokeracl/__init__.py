"""The broker ACL made from the device registry: each device may publish only as itself.

A device's (site, kind, id) come from ``config/devices.yaml``; its username is its id. The
ACL grants that user its two literal topics and nothing else, so a device cannot vary the site
or kind levels of its topics, nor reach a service namespace (``P/alerts/...``,
``P/dispatch/...``) through its own id. The services' section is hand-written
(``deploy/mosquitto/acl-services``) and copied verbatim ahead of the generated one.

The bridge (``svc.bridge``) publishes on behalf of registered devices, so its block is
generated too: the literal telemetry topic of every registered device and its own dead-letter
topic. A wildcard (``P/+/+/+/telemetry``) would also match service namespaces with five
levels (``P/alerts/_dispatch/<id>/telemetry``, a retained dispatch record).

The bridge also reads the sources that publish to our broker (a source in the sources file
without a ``broker:`` section): one ``topic read`` per subscription filter of theirs. A sources
file that is missing or unreadable, or a filter that is not one, grants no reads (reported by
:func:`local_source_filters`) and leaves the rest of the ACL as it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import yaml

from common.devices import Registry
from common.topics import DEFAULT_PREFIX, Topics

__all__ = [
    "BRIDGE_SECTION_MARK",
    "BRIDGE_USER",
    "DEVICE_SECTION_MARK",
    "local_source_filters",
    "render_acl",
]

DEVICE_SECTION_MARK: Final = "# --- devices: generated from the device registry"
BRIDGE_SECTION_MARK: Final = "# --- bridge: generated from the device registry"
BRIDGE_USER: Final = "svc.bridge"
# services/bridge's DEADLETTER_PROGRAM; brokeracl does not import a program.
BRIDGE_DEADLETTER: Final = "bridge"


# One ACL line per filter: no spaces or control characters (they would end or split the line).
_FILTER_TEXT = re.compile(r"^[^\s\x00-\x1f\x7f]{1,500}$")


def _is_filter(text: object) -> bool:
    if not isinstance(text, str) or not _FILTER_TEXT.match(text):
        return False
    levels = text.split("/")
    bad_level = any(("#" in lv and lv != "#") or ("+" in lv and lv != "+") for lv in levels)
    return not bad_level and "#" not in levels[:-1]


def local_source_filters(path: Path) -> tuple[list[str], list[str]]:
    """The subscription filters of the sources on our broker in the sources file ``path``, and
    a problem line for each source (or the whole file) that grants nothing.

    The bridge validates the file in full when it starts; here only what the ACL needs is
    read, so a mistake elsewhere in the file costs the bridge nothing at the broker."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return [], [f"{path}: not read ({exc.__class__.__name__}); the bridge reads nothing"]
    sources = data.get("sources") if isinstance(data, dict) else None
    if not isinstance(sources, list):
        return [], [f"{path}: no `sources:` list; the bridge reads nothing"]
    filters: list[str] = []
    problems: list[str] = []
    for n, source in enumerate(sources, 1):
        if not isinstance(source, dict) or source.get("broker") is not None:
            continue  # a source broker's own ACL governs what the bridge reads there
        name = source.get("name", f"#{n}")
        subscribe = source.get("subscribe")
        wanted: list[Any] = subscribe if isinstance(subscribe, list) else [subscribe]
        if not wanted or not all(_is_filter(f) for f in wanted):
            problems.append(f"{path}: source {name!s:.100}: subscribe is not a list of filters")
            continue
        filters += [str(f) for f in wanted if f not in filters]
    return filters, problems


def bridge_rules(
    registry: Registry, topics: Topics, read_filters: list[str] | None = None
) -> list[str]:
    """svc.bridge: write every registered device's telemetry and its own dead letters only;
    read the subscription filters of the sources on our broker."""
    lines = [f"user {BRIDGE_USER}", f"topic write {topics.deadletter(BRIDGE_DEADLETTER)}"]
    for device in sorted(registry.devices, key=lambda d: d.id):
        lines.append(f"topic write {topics.telemetry(device.site, device.kind, device.id)}")
    lines += [f"topic read {f}" for f in read_filters or []]
    return [*lines, ""]


def device_rules(registry: Registry, topics: Topics) -> list[str]:
    """One ``user`` block per registered device: write its telemetry and status, read its status."""
    lines: list[str] = []
    for device in sorted(registry.devices, key=lambda d: d.id):
        telemetry = topics.telemetry(device.site, device.kind, device.id)
        status = topics.status(device.site, device.kind, device.id)
        lines += [
            f"user {device.id}",
            f"topic write {telemetry}",
            f"topic write {status}",
            # A device may read back its own retained status; nothing of other devices.
            f"topic read {status}",
            "",
        ]
    return lines


def render_acl(
    registry: Registry, services_section: str, bridge_reads: list[str] | None = None
) -> str:
    """The whole ACL file: the services' section, the bridge's block (``bridge_reads``: the
    filters of the sources on our broker), then one block per registered device."""
    topics = Topics(DEFAULT_PREFIX)
    header = [
        "# Mosquitto ACL for facility-monitor. GENERATED by facility-acl (`make acl`) from the",
        "# device registry (config/devices.yaml) and deploy/mosquitto/acl-services: edit those",
        "# and regenerate.",
        "",
    ]
    bridge = [
        f"{BRIDGE_SECTION_MARK} ({len(registry.devices)} devices) ---",
        "# Publishes the readings it converts from foreign devices (LoRaWAN, Shelly, ...):",
        "# the telemetry of registered devices only, never status, alerts or dispatch.",
        "# Reads the subscriptions of the sources on this broker (sources file, no `broker:`).",
        "",
        *bridge_rules(registry, topics, bridge_reads),
    ]
    devices = [
        f"{DEVICE_SECTION_MARK} ({len(registry.devices)} devices) ---",
        "# The username is the device id; each may publish only its own (site, kind, id) topics.",
        "# A device with credentials but no block here can log in and do nothing.",
        "",
        *device_rules(registry, topics),
    ]
    return (
        "\n".join([*header, services_section.rstrip("\n"), "", *bridge, *devices]).rstrip("\n")
        + "\n"
    )
