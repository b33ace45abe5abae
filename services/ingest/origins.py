"""A spooled batch with where each of its lines came from, so a line the database refuses at
replay time is dead-lettered with its message (topic, payload, receive time), not just itself.

Record layout: ``MAGIC | u32 n | n x (u64 received_ms, u16 topic bytes, u32 payload bytes) |
topics and payloads | line protocol``. A record not starting with ``MAGIC`` is a bare batch:
what spools written before origins were kept hold, and batches with no origins (self-report).
Line protocol cannot start with a NUL byte, so the two never mix up.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from services.ingest.batcher import Origin

MAGIC = b"\x00fm-origins-1\n"
_COUNT = struct.Struct(">I")
_ENTRY = struct.Struct(">QHI")


class OriginsDamaged(ValueError):
    """A record claims origins it does not hold (cannot happen past the spool's CRC)."""


def pack(body: bytes, origins: Sequence[Origin] | None) -> bytes:
    """``body`` with its origins (one per line, in order); the bare body without them."""
    if not origins or len(origins) != body.count(b"\n"):
        return body
    head = [MAGIC, _COUNT.pack(len(origins))]
    blobs: list[bytes] = []
    for topic, payload, received_ms in origins:
        encoded = topic.encode("utf-8", "replace")[:65_535]
        head.append(_ENTRY.pack(received_ms, len(encoded), len(payload)))
        blobs.append(encoded)
        blobs.append(payload)
    return b"".join(head + blobs) + body


def unpack(record: bytes) -> tuple[bytes, list[Origin] | None]:
    """``(line protocol, origins or None)`` of a spool record."""
    if not record.startswith(MAGIC):
        return record, None
    at = len(MAGIC)
    try:
        (count,) = _COUNT.unpack_from(record, at)
        at += _COUNT.size
        entries = [_ENTRY.unpack_from(record, at + i * _ENTRY.size) for i in range(count)]
        at += count * _ENTRY.size
        origins: list[Origin] = []
        for received_ms, topic_len, payload_len in entries:
            topic = record[at : at + topic_len].decode("utf-8", "replace")
            at += topic_len
            payload = record[at : at + payload_len]
            at += payload_len
            origins.append((topic, payload, received_ms))
    except struct.error as exc:
        raise OriginsDamaged(str(exc)) from exc
    body = record[at:]
    lines = body.count(b"\n")
    if len(origins) != lines:
        raise OriginsDamaged(f"{len(origins)} origins for {lines} lines")
    return body, origins
