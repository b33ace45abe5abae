"""Every MQTT topic of the contract, built and parsed in one place.

A topic object validates itself when built, so an invalid id or a wildcard in a publish
topic cannot exist as a value of these types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"
"""Every id of the contract: site, kind, device, zone, truck, rule, dispatch."""
_ID_RE: Final = re.compile(ID_PATTERN)
DEFAULT_PREFIX = "facility"
# Reserved second levels: a site may not be called like these or its topics would collide.
RESERVED_SITES: frozenset[str] = frozenset({"alerts", "dispatch", "deadletter"})

Channel = Literal["telemetry", "status"]
CHANNELS: frozenset[str] = frozenset({"telemetry", "status"})


class TopicError(ValueError):
    """A topic or topic part that does not fit the contract's scheme."""


def check_id(value: str, what: str) -> str:
    """Return ``value`` if it is a valid site/kind/device/rule id, else raise TopicError."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise TopicError(f"invalid {what} {value!r}: must match {ID_PATTERN}")
    return value


def check_prefix(prefix: str) -> str:
    """A prefix may have several levels (``city/facility``) but no wildcard or empty level."""
    if not prefix or any(not level for level in prefix.split("/")):
        raise TopicError(f"invalid topic prefix {prefix!r}: empty level")
    if any(ch in prefix for ch in "+#\x00") or prefix.startswith("$"):
        raise TopicError(f"invalid topic prefix {prefix!r}: wildcards and '$' are not allowed")
    return prefix


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """``P/{site}/{kind}/{device_id}/{telemetry|status}``."""

    prefix: str
    site: str
    kind: str
    device_id: str
    channel: Channel

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        check_id(self.site, "site")
        if self.site in RESERVED_SITES:
            raise TopicError(f"invalid site {self.site!r}: reserved topic level")
        check_id(self.kind, "kind")
        check_id(self.device_id, "device_id")
        if self.channel not in CHANNELS:
            raise TopicError(f"invalid channel {self.channel!r}: telemetry or status")

    def __str__(self) -> str:
        return f"{self.prefix}/{self.site}/{self.kind}/{self.device_id}/{self.channel}"


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds the contract's topics under one prefix (``MQTT_TOPIC_PREFIX``)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    # -- device topics ---------------------------------------------------------------------
    def telemetry(self, site: str, kind: str, device_id: str) -> str:
        return str(DeviceTopic(self.prefix, site, kind, device_id, "telemetry"))

    def status(self, site: str, kind: str, device_id: str) -> str:
        return str(DeviceTopic(self.prefix, site, kind, device_id, "status"))

    # -- alerts ----------------------------------------------------------------------------
    def alert(self, rule: str, site: str, device_id: str) -> str:
        if rule == "active":
            raise TopicError("invalid rule 'active': reserved topic level")
        return f"{self.prefix}/alerts/{_ids(rule=rule, site=site, device_id=device_id)}"

    def alert_active(self, rule: str, site: str, device_id: str) -> str:
        return f"{self.prefix}/alerts/active/{_ids(rule=rule, site=site, device_id=device_id)}"

    # -- the alerts service's own subtree (``_`` can never start a rule name) ----------------
    def alerts_sync(self) -> str:
        """The marker the alerts service sends itself once its retained state is in."""
        return f"{self.prefix}/alerts/_sync"

    def dispatch_record(self, dispatch_id: str) -> str:
        """Where an open dispatch's request is retained until it closes."""
        return f"{self.prefix}/alerts/_dispatch/{check_id(dispatch_id, 'dispatch_id')}"

    # -- dispatch --------------------------------------------------------------------------
    def dispatch_requests(self) -> str:
        return f"{self.prefix}/dispatch/requests"

    def dispatch_status(self, dispatch_id: str) -> str:
        check_id(dispatch_id, "dispatch_id")
        if dispatch_id == "requests":
            raise TopicError("invalid dispatch_id 'requests': reserved topic level")
        return f"{self.prefix}/dispatch/{dispatch_id}/status"

    def deadletter(self, program: str) -> str:
        return f"{self.prefix}/deadletter/{check_id(program, 'program')}"

    # -- subscription filters (the only place wildcards are allowed) --------------------------
    def all_telemetry(self) -> str:
        return f"{self.prefix}/+/+/+/telemetry"

    def all_status(self) -> str:
        return f"{self.prefix}/+/+/+/status"

    def all_active_alerts(self) -> str:
        return f"{self.prefix}/alerts/active/#"

    def all_dispatch_status(self) -> str:
        return f"{self.prefix}/dispatch/+/status"

    def all_dispatch_records(self) -> str:
        return f"{self.prefix}/alerts/_dispatch/+"

    # -- parsing ---------------------------------------------------------------------------
    def parse_device_topic(self, topic: str) -> DeviceTopic:
        """Parse a telemetry/status topic; raise TopicError naming what is wrong."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise TopicError(f"topic {topic!r} is not under prefix {self.prefix!r}")
        parts = topic[len(head) :].split("/")
        if len(parts) != 4:
            raise TopicError(
                f"topic {topic!r} does not match {self.prefix}/{{site}}/{{kind}}/{{device_id}}/"
                "{telemetry|status}"
            )
        site, kind, device_id, last = parts
        channel: Channel
        if last == "telemetry":
            channel = "telemetry"
        elif last == "status":
            channel = "status"
        else:
            raise TopicError(f"topic {topic!r}: last level must be telemetry or status")
        return DeviceTopic(self.prefix, site, kind, device_id, channel)

    def parse_dispatch_status(self, topic: str) -> str:
        """Return the dispatch id of a ``P/dispatch/{id}/status`` topic (exactly that shape:
        ``P/dispatch/x/{device}/status`` is none)."""
        head = f"{self.prefix}/dispatch/"
        if not topic.startswith(head) or not topic.endswith("/status"):
            raise TopicError(f"topic {topic!r} is not a dispatch status topic")
        dispatch_id = check_id(topic[len(head) : -len("/status")], "dispatch_id")
        if dispatch_id == "requests":
            raise TopicError("invalid dispatch_id 'requests': reserved topic level")
        return dispatch_id

    def service_namespace(self, topic: str) -> str | None:
        """The reserved level (``alerts``, ``dispatch``, ``deadletter``) ``topic`` is under,
        if any. Such a topic belongs to a service whatever its shape: it is never a device's
        reading, even when it has a device topic's number of levels."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        level = topic[len(head) :].split("/", 1)[0]
        return level if level in RESERVED_SITES else None

    def is_active_alert(self, topic: str) -> bool:
        """True for any topic under ``P/alerts/active/`` (well-formed or not)."""
        return topic.startswith(f"{self.prefix}/alerts/active/")

    def is_dispatch_record(self, topic: str) -> bool:
        """True for any topic under ``P/alerts/_dispatch/`` (well-formed or not)."""
        return topic.startswith(f"{self.prefix}/alerts/_dispatch/")

    def is_dispatch(self, topic: str) -> bool:
        """True for any topic under ``P/dispatch/`` (requests and statuses)."""
        return topic.startswith(f"{self.prefix}/dispatch/")

    def parse_dispatch_record(self, topic: str) -> str:
        """Return the dispatch id of a ``P/alerts/_dispatch/{id}`` topic (exactly one level
        under ``_dispatch``)."""
        head = f"{self.prefix}/alerts/_dispatch/"
        if not topic.startswith(head):
            raise TopicError(f"topic {topic!r} is not a dispatch record topic")
        return check_id(topic[len(head) :], "dispatch_id")

    def parse_active_alert(self, topic: str) -> tuple[str, str, str]:
        """Return ``(rule, site, device_id)`` of a ``P/alerts/active/...`` topic."""
        head = f"{self.prefix}/alerts/active/"
        if not topic.startswith(head):
            raise TopicError(f"topic {topic!r} is not an active-alert topic")
        parts = topic[len(head) :].split("/")
        if len(parts) != 3:
            raise TopicError(f"topic {topic!r}: expected .../active/{{rule}}/{{site}}/{{device}}")
        rule, site, device_id = parts
        return check_id(rule, "rule"), check_id(site, "site"), check_id(device_id, "device_id")


def _ids(**parts: str) -> str:
    return "/".join(check_id(value, name) for name, value in parts.items())
