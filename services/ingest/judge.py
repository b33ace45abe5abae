"""How ingest turns one message into one line of line protocol: judge it (``parse_message``
with the registry's gate and the future bound), tag it from the registry, encode it. Live
messages and re-driven dead letters go through this same code."""

from __future__ import annotations

from collections.abc import Mapping

from common.devices import Registry
from common.identity import DeviceGate
from common.kinds import MAX_FUTURE_MS
from common.lineproto import LineProtocolError, encode_point
from common.payloads import ParseResult, Reading, Rejection, StatusReading, parse_message
from common.schema import reading_point, status_point
from common.topics import Topics

UNENCODABLE = "unencodable"
"""Dead-letter reason for a valid reading line protocol cannot carry (should never happen)."""


class Judge:
    """Not thread-safe (its tag cache and the gate): one per thread that judges."""

    def __init__(
        self,
        topics: Topics,
        registry: Registry | None,
        gate: DeviceGate | None,
        max_future_ms: int = MAX_FUTURE_MS,
    ) -> None:
        self.topics = topics
        self.registry = registry
        self.gate = gate
        self.max_future_ms = max_future_ms
        self._tags: dict[tuple[str, str], dict[str, str]] = {}

    def parse(self, topic: str, payload: bytes, now_ms: int) -> ParseResult:
        return parse_message(
            topic,
            payload,
            self.topics,
            now_ms=now_ms,
            gate=self.gate,
            max_future_ms=self.max_future_ms,
        )

    def line(self, result: Reading | StatusReading) -> tuple[str, int] | Rejection:
        """``(line, event time ms)`` of a judged message, or why it cannot be encoded."""
        if isinstance(result, Reading):
            point = reading_point(result, self._registry_tags(result.site, result.device_id))
        else:
            point = status_point(result)
        try:
            return encode_point(*point), point[3]
        except LineProtocolError as exc:
            return Rejection(UNENCODABLE, str(exc))

    def _registry_tags(self, site: str, device_id: str) -> Mapping[str, str] | None:
        if self.registry is None:
            return None
        key = (site, device_id)
        tags = self._tags.get(key)
        if tags is None:
            if len(self._tags) > 100_000:  # bound memory against a flood of unknown ids
                self._tags.clear()
            tags = self._tags[key] = self.registry.tags_for(site, device_id)
        return tags
