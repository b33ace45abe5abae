"""Spool records with their lines' origins, and bare ones (older spools, self-report)."""

from __future__ import annotations

import pytest

from services.ingest.origins import OriginsDamaged, pack, unpack


def test_a_batch_and_its_origins_come_back_as_they_went_in() -> None:
    body = b"m v=1 1\nm v=2 2\n"
    origins = [("facility/a/b/c/telemetry", b'{"ts": 1}', 10), ("t/é", bytes(range(256)), 11)]
    assert unpack(pack(body, origins)) == (body, origins)


def test_a_bare_batch_is_read_as_before() -> None:
    body = b"ingest_stats,client_id=x n=1i 1\n"
    assert pack(body, None) == body
    assert unpack(body) == (body, None)
    # Origins that do not match the lines are not kept rather than misattributed.
    assert pack(b"m v=1 1\nm v=2 2\n", [("t", b"p", 1)]) == b"m v=1 1\nm v=2 2\n"


def test_a_record_cut_short_is_reported_not_misread() -> None:
    record = pack(b"m v=1 1\n", [("t", b"payload", 1)])
    with pytest.raises(OriginsDamaged):
        unpack(record[:20])
