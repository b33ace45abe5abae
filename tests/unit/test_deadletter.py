"""Dead letters carry a bounded excerpt of what was rejected, plus its length and hash."""

from __future__ import annotations

import hashlib

from common.messages import DEADLETTER_EXCERPT_BYTES, DeadLetter


def build(raw: bytes, topic: str = "facility/ewaste/ewaste_bin/bin-001/telemetry") -> DeadLetter:
    return DeadLetter.build("ingest", topic, raw, "too_large", "big", "2026-01-01T00:00:00Z")


def test_a_small_payload_is_carried_whole_with_its_length_and_hash() -> None:
    letter = build(b"not json")
    assert letter.raw_payload() == b"not json" and not letter.payload_truncated
    assert letter.payload_bytes == 8
    assert letter.payload_sha256 == hashlib.sha256(b"not json").hexdigest()


def test_a_huge_payload_comes_back_as_a_bounded_excerpt() -> None:
    raw = b"x" * (64 << 20)
    letter = build(raw, topic="t/" + "y" * 70_000)
    assert len(letter.model_dump_json()) < 3 * DEADLETTER_EXCERPT_BYTES
    assert letter.payload_truncated and letter.payload_bytes == len(raw)
    assert letter.payload_sha256 == hashlib.sha256(raw).hexdigest()
    assert raw.startswith(letter.raw_payload())


def test_an_excerpt_cut_inside_a_character_stays_text() -> None:
    raw = "é".encode() * DEADLETTER_EXCERPT_BYTES
    letter = build(raw)
    assert letter.payload_encoding == "utf-8"
    assert raw.startswith(letter.raw_payload())


def test_binary_is_base64_and_old_letters_still_read() -> None:
    assert build(b"\xff\xfe\x00").payload_encoding == "base64"
    old = DeadLetter.model_validate_json(
        '{"topic": "t", "payload": "x", "reason": "r", "code": "c", '
        '"received_at": "2026-01-01T00:00:00Z", "program": "ingest"}'
    )
    assert old.raw_payload() == b"x" and old.payload_bytes is None
