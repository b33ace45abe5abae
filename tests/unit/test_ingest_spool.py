"""The ingest spool: framing, torn tails after a crash, replay order, size cap."""

from __future__ import annotations

import errno
import os
import struct
import zlib
from pathlib import Path

import pytest

from services.ingest.spool import DiskFull, Spool, SpoolFull, scan_segment


def drain(spool: Spool) -> list[bytes]:
    out = []
    while (record := spool.peek()) is not None:
        out.append(record.data)
        spool.pop(record)
    return out


def test_records_come_back_in_append_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6, segment_bytes=100)
    batches = [f"m v={i} {i}\n".encode() * 5 for i in range(20)]
    for batch in batches:
        spool.append(batch)
    assert len(list(tmp_path.glob("*.seg"))) > 1
    assert spool.records == 20
    assert drain(spool) == batches
    assert spool.empty and spool.size_bytes == 0
    assert list(tmp_path.glob("*.seg")) == []


def test_frame_is_length_crc_payload(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append(b"abc\n")
    (segment,) = tmp_path.glob("*.seg")
    raw = segment.read_bytes()
    assert raw == struct.pack(">II", 4, zlib.crc32(b"abc\n")) + b"abc\n"


def test_survives_restart_and_replays_what_was_not_popped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    for i in range(5):
        spool.append(f"b{i}\n".encode())
    first = spool.peek()
    assert first is not None
    spool.pop(first)
    spool.close()  # a crash here loses nothing: the file is the state
    reopened = Spool(tmp_path, max_bytes=10**6)
    # Popped records of a segment not yet deleted come back: replaying them twice is harmless.
    assert drain(reopened) == [f"b{i}\n".encode() for i in range(5)]


@pytest.mark.parametrize("cut", [1, 4, 8, 9, 12])
def test_torn_tail_is_cut_off_and_earlier_records_kept(tmp_path: Path, cut: int) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append(b"first\n")
    spool.append(b"second-batch\n")
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    full = segment.read_bytes()
    segment.write_bytes(full[: len(full) - cut])  # the crash happened mid-append
    reopened = Spool(tmp_path, max_bytes=10**6)
    assert reopened.records == 1
    assert drain(reopened) == [b"first\n"]


def test_corrupt_crc_ends_the_valid_prefix(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append(b"good\n")
    spool.append(b"flipped\n")
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    raw = bytearray(segment.read_bytes())
    raw[-2] ^= 0xFF
    segment.write_bytes(bytes(raw))
    assert scan_segment(segment) == (1, 8 + 5)
    assert drain(Spool(tmp_path, max_bytes=10**6)) == [b"good\n"]


def test_appends_after_recovery_go_after_recovered_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append(b"old\n")
    spool.close()
    reopened = Spool(tmp_path, max_bytes=10**6)
    reopened.append(b"new\n")
    assert drain(reopened) == [b"old\n", b"new\n"]


def test_cap_refuses_appends_instead_of_dropping(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024, segment_bytes=16 * 1024)
    batch = b"x" * 10_000 + b"\n"
    for _ in range(6):
        spool.append(batch)
    with pytest.raises(SpoolFull):
        spool.append(batch)
    assert spool.records == 6  # nothing was dropped to make room
    record = spool.peek()
    assert record is not None
    spool.pop(record)
    spool.pop(spool.peek())  # type: ignore[arg-type]
    spool.append(batch)  # room again once replayed records' segment is gone
    assert spool.records == 5


def test_empty_spool_peeks_none(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "new", max_bytes=10**6)
    assert spool.peek() is None and spool.empty


def _frame_offsets(segment: Path) -> list[int]:
    raw = segment.read_bytes()
    offsets, offset = [], 0
    while offset < len(raw):
        offsets.append(offset)
        offset += 8 + struct.unpack_from(">I", raw, offset)[0]
    return offsets


def _flip(segment: Path, at: int) -> bytes:
    raw = bytearray(segment.read_bytes())
    raw[at] ^= 0x01
    segment.write_bytes(bytes(raw))
    return bytes(raw)


@pytest.mark.parametrize("where", [0, 3, 8], ids=["length", "crc", "batch"])
def test_a_flipped_bit_mid_segment_costs_only_its_frame(tmp_path: Path, where: int) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    batches = [f"m v={i} {i}\n".encode() * 3 for i in range(10)]
    for batch in batches:
        spool.append(batch)
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    damaged = _flip(segment, _frame_offsets(segment)[4] + where)
    reopened = Spool(tmp_path, max_bytes=10**6)
    assert reopened.records == 9
    assert reopened.quarantined == 1 and reopened.damaged_bytes > 0
    assert reopened.last_quarantined is not None
    assert reopened.last_quarantined.read_bytes() == damaged  # kept as found
    assert drain(reopened) == batches[:4] + batches[5:]
    assert list(tmp_path.glob("*.seg")) == []


def test_damage_in_an_older_segment_is_quarantined_not_cut(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6, segment_bytes=60)
    batches = [f"m v={i} {i}\n".encode() * 3 for i in range(6)]
    for batch in batches:
        spool.append(batch)
    spool.close()
    first, *_ = sorted(tmp_path.glob("*.seg"))
    raw = first.read_bytes()
    first.write_bytes(raw[:-3])  # an older segment's tail is never a crash's torn write
    reopened = Spool(tmp_path, max_bytes=10**6, segment_bytes=60)
    assert reopened.quarantined == 1
    assert drain(reopened) == batches[:1] + batches[2:]  # two frames a segment: the 2nd is cut


def test_a_frame_damaged_while_running_is_skipped_during_replay(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    batches = [f"b{i}\n".encode() for i in range(5)]
    for batch in batches:
        spool.append(batch)
    (segment,) = tmp_path.glob("*.seg")
    _flip(segment, _frame_offsets(segment)[2] + 9)  # the disk changes under the running spool
    assert drain(spool) == batches[:2] + batches[3:]  # never raises
    assert spool.quarantined == 1 and spool.empty
    spool.append(b"after\n")  # and appending goes on
    assert drain(spool) == [b"after\n"]


def test_disk_full_rolls_back_the_partial_frame_and_is_a_full_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append(b"kept\n")
    (segment,) = tmp_path.glob("*.seg")
    size = segment.stat().st_size
    real_write = os.write

    def half_then_enospc(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", no_space)
        return real_write(fd, bytes(data)[: len(data) // 2])

    def no_space(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    with pytest.raises(DiskFull) as caught:
        spool.append(b"refused-batch\n")
    assert isinstance(caught.value, SpoolFull)  # callers hold acks as for a full spool
    assert spool.disk_full is not None and "disk full" in spool.disk_full
    assert segment.stat().st_size == size and spool.records == 1  # nothing half-written left
    monkeypatch.setattr(os, "write", real_write)  # space returns
    spool.append(b"refused-batch\n")
    assert spool.disk_full is None
    assert drain(spool) == [b"kept\n", b"refused-batch\n"]


def test_two_damaged_frames_of_one_segment_keep_one_copy(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6)
    batches = [f"b{i}\n".encode() for i in range(6)]
    for batch in batches:
        spool.append(batch)
    (segment,) = tmp_path.glob("*.seg")
    offsets = _frame_offsets(segment)
    _flip(segment, offsets[1] + 9)
    _flip(segment, offsets[4] + 9)
    assert drain(spool) == [batches[0], batches[2], batches[3], batches[5]]
    assert spool.quarantined == 1
