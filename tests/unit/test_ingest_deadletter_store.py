"""The dead-letter store: bounded and rotated (oldest dropped, counted), torn lines cut, a
failed write kept for the next, re-drive claims seen once each."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from services.ingest.deadletter_store import DeadLetterStore, StoreBusy, StoredLetter


def letter(i: int, payload: bytes = b'{"ts": 1}') -> StoredLetter:
    return StoredLetter.build(
        f"facility/ewaste/ewaste_bin/bin-{i:03d}/telemetry", payload, "ts_in_future", "ahead",
        1_700_000_000_000 + i, "live",
    )  # fmt: skip


def fill(store: DeadLetterStore, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        store.add(letter(i))
        store.flush()


def test_letters_keep_the_whole_message_and_survive_a_new_store(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40  # not UTF-8, 10 KiB: kept whole, as base64
    store = DeadLetterStore(tmp_path, max_bytes=10**6)
    store.add(letter(1, payload))
    assert store.flush() == 1
    [again], unreadable = DeadLetterStore(tmp_path, max_bytes=10**6).letters()
    assert again.payload() == payload and not again.payload_truncated and unreadable == 0
    assert again.received_at == "2023-11-14T22:13:20.001Z" and again.origin == "live"


def test_store_rotates_segments_and_drops_the_oldest_past_its_bound(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, max_bytes=8192, segment_bytes=2048)
    fill(store, 200)
    segments = store.segments()
    assert len(segments) > 1
    assert sum(p.stat().st_size for p in segments) <= 8192 + 2048
    kept, _ = store.letters()
    assert store.dropped > 0 and len(kept) + store.dropped == 200
    # What is left is the newest, in order.
    assert [x.received_ms for x in kept] == [
        1_700_000_000_000 + i for i in range(200 - len(kept), 200)
    ]


def test_a_torn_last_line_is_cut_before_the_next_write(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, max_bytes=10**6)
    fill(store, 2)
    [segment] = store.segments()
    with segment.open("ab") as f:
        f.write(b'{"id": "half a lett')  # a crash mid-write
    assert store.letters()[1] == 1
    fill(store, 1, start=2)
    letters, unreadable = store.letters()
    assert len(letters) == 3 and unreadable == 0


def test_a_failed_write_is_cut_back_and_kept_for_the_next_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DeadLetterStore(tmp_path, max_bytes=10**6)
    fill(store, 1)
    [segment] = store.segments()
    size = segment.stat().st_size
    real_write = os.write

    def half_then_enospc(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", no_space)
        return real_write(fd, bytes(data)[: len(data) // 2])

    def no_space(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    store.add(letter(1))
    with pytest.raises(OSError):
        store.flush()
    assert store.error is not None and "No space" in store.error and store.pending == 1
    assert segment.stat().st_size == size  # nothing half-written left
    monkeypatch.setattr(os, "write", real_write)  # space returns
    assert store.flush() == 1 and store.error is None
    assert len(store.letters()[0]) == 2


def test_a_redrive_claims_every_letter_once_even_after_a_crash_mid_way(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, max_bytes=10**6)
    fill(store, 3)
    with store.redriving():
        claim = store.claim()
        assert len(claim.letters) == 3 and store.segments() == []
        # The service goes on writing meanwhile: into a new segment.
        fill(store, 1, start=3)
        store.add(claim.letters[0].failed_again("unknown_device", "still unknown"))
        store.flush()  # written back, then the re-drive dies before deleting its claim
    assert len(store.letters()[0]) == 4  # the written-back copy and the claimed one: once
    with store.redriving():
        again = store.claim()
        assert len(again.letters) == 4
        store.finish(again, keep=[again.letters[0]])
    [left], _ = store.letters()
    assert left.id == claim.letters[0].id


def test_only_one_redrive_at_a_time(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, max_bytes=10**6)
    other = DeadLetterStore(tmp_path, max_bytes=10**6)
    with store.redriving(), pytest.raises(StoreBusy), other.redriving():
        pass
