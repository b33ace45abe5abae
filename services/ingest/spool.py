"""The durable spool: batches the database did not take, appended and fsynced, replayed in order.

A spool is a directory of append-only segment files (``00000001.seg`` ...). Each record is a
line-protocol batch framed as ``length (u32 BE) | crc32 (u32 BE) | bytes``. Damage is handled
by where it is: a short or failed frame at the very end of the newest segment is a torn write
from a crash and is cut off at start-up; anywhere else (a flipped bit, a bad sector) the spool
resyncs to the next intact frame, keeps a copy of the segment as it was under ``quarantine/``
and goes on, so one bad frame costs that frame only. An append that fails (disk full) is rolled
back to the last whole frame and reported as :class:`DiskFull`, a kind of :class:`SpoolFull`.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from common.durable import fsync_dir

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
SUFFIX = ".seg"
QUARANTINE = "quarantine"
"""Subfolder keeping damaged segments as they were found, for a person to inspect or delete."""
MAX_RECORD_BYTES = 256 * 1024**2  # a length above this is garbage, not a batch
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class SpoolFull(Exception):
    """Appending would exceed the size cap; the caller must hold its acks (back-pressure)."""


class DiskFull(SpoolFull):
    """The file system refused the append (no space, quota, file size limit); nothing of the
    record is left behind. Handled like a full spool: hold acks and retry."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One spooled batch and where it lives (for :meth:`Spool.pop`)."""

    segment: int
    offset: int
    end: int
    data: bytes


def _segment_name(number: int) -> str:
    return f"{number:08d}{SUFFIX}"


def free_bytes(directory: Path) -> int:
    """Space left to an unprivileged writer on the file system holding ``directory``."""
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def _frame_end(buf: bytes, offset: int) -> int | None:
    """End of the intact frame starting at ``offset``, or None if none starts there."""
    if offset + _HEADER.size > len(buf):
        return None
    length: int
    crc: int
    length, crc = _HEADER.unpack_from(buf, offset)
    end = offset + _HEADER.size + length
    if length > MAX_RECORD_BYTES or end > len(buf):
        return None
    if zlib.crc32(memoryview(buf)[offset + _HEADER.size : end]) != crc:
        return None
    return end


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """Every intact frame of a segment, found by resyncing past damage."""

    frames: tuple[tuple[int, int], ...]
    """(offset, end) of each intact frame, in order."""
    size: int

    @property
    def damaged_bytes(self) -> int:
        return self.size - sum(end - start for start, end in self.frames)

    @property
    def tail_only(self) -> bool:
        """Damage only after the last intact frame: what a crash mid-append leaves."""
        return self.damaged_bytes == self.size - (self.frames[-1][1] if self.frames else 0)


def scan_frames(buf: bytes, start: int = 0) -> SegmentScan:
    """Walk frames from ``start``; at a bad one, try each later offset until one checks out
    (length in range and CRC matching: a false match is a 1 in 2**32 chance per offset)."""
    frames: list[tuple[int, int]] = []
    offset = start
    size = len(buf)
    while offset + _HEADER.size <= size:
        end = _frame_end(buf, offset)
        if end is not None:
            frames.append((offset, end))
            offset = end
            continue
        offset += 1
    return SegmentScan(tuple(frames), size - start)


def scan_segment(path: Path) -> tuple[int, int]:
    """Return ``(records, valid_bytes)``: the intact prefix of a segment file."""
    buf = path.read_bytes()
    records = offset = 0
    while (end := _frame_end(buf, offset)) is not None:
        records += 1
        offset = end
    return records, offset


class Spool:
    """Append-only, size-capped, crash-safe FIFO of byte records. Thread-safe."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 8 * 1024**2) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.quarantine_dir = directory / QUARANTINE
        self._lock = threading.Lock()
        self._segments: dict[int, int] = {}  # segment number -> size in bytes
        self._counts: dict[int, int] = {}  # segment number -> records not yet popped
        self._records = 0
        self._head_offset = 0  # read position in the oldest segment
        self._fd: int | None = None  # the segment being appended to
        self._writer_segment = 0
        self.disk_full: str | None = None
        """Why the last append failed for lack of space; None once an append succeeds."""
        self.damaged_bytes = 0
        """Bytes of damaged frames skipped since start (their batches are lost)."""
        self.last_quarantined: Path | None = None
        self._kept: dict[str, Path] = {}  # segment name -> its copy in quarantine/, this run
        directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    # -- start-up ---------------------------------------------------------------------------
    def _recover(self) -> None:
        paths = []
        for path in sorted(self.directory.glob("*" + SUFFIX)):
            try:
                paths.append((int(path.stem), path))
            except ValueError:
                continue
        newest = paths[-1][0] if paths else None
        for number, path in paths:
            buf = path.read_bytes()
            scan = scan_frames(buf)
            if scan.damaged_bytes and scan.tail_only and number == newest:
                valid = scan.frames[-1][1] if scan.frames else 0
                log.warning(
                    "spool: cutting torn tail off segment",
                    extra={
                        "segment": path.name,
                        "kept_bytes": valid,
                        "cut_bytes": scan.size - valid,
                    },
                )
                with path.open("r+b") as f:
                    f.truncate(valid)
                    os.fsync(f.fileno())
            elif scan.damaged_bytes:
                self._quarantine(path, scan)
                _rewrite(path, buf, scan.frames)
            if not scan.frames:
                path.unlink()
                continue
            self._segments[number] = sum(end - start for start, end in scan.frames)
            self._counts[number] = len(scan.frames)
            self._records += len(scan.frames)
        # Never append to a recovered segment: a fresh one keeps recovery logic trivial.
        self._writer_segment = max(self._segments, default=0)
        if self._segments:
            fsync_dir(self.directory)
            log.info(
                "spool: found batches to replay",
                extra={"batches": self._records, "bytes": self.size_bytes},
            )

    def _quarantine(self, path: Path, scan: SegmentScan) -> None:
        """Keep the segment as found (once per segment), then go on with its intact frames only.
        Keeping the copy is best effort: on a full disk the skip must still happen."""
        self.damaged_bytes += scan.damaged_bytes
        kept = self._kept.get(path.name)
        if kept is None:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            kept = self.quarantine_dir / f"{path.name}.{stamp}.{os.getpid()}"
            try:
                self.quarantine_dir.mkdir(exist_ok=True)
                shutil.copyfile(path, kept)
                _fsync_file(kept)
                fsync_dir(self.quarantine_dir)
            except OSError as exc:
                log.error(
                    "spool: could not keep a copy of a damaged segment",
                    extra={"segment": path.name, "error": str(exc)},
                )
            else:
                self._kept[path.name] = kept
                self.last_quarantined = kept
        log.error(
            "spool: damaged segment quarantined; skipping its bad frames, keeping the rest",
            extra={
                "segment": path.name,
                "quarantined_as": str(kept),
                "intact_batches": len(scan.frames),
                "damaged_bytes": scan.damaged_bytes,
            },
        )

    # -- state ----------------------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        return sum(self._segments.values())

    @property
    def records(self) -> int:
        return self._records

    @property
    def empty(self) -> bool:
        return self._records == 0

    @property
    def quarantined(self) -> int:
        """Damaged segments kept under ``quarantine/`` (until a person removes them)."""
        try:
            return sum(1 for p in self.quarantine_dir.iterdir() if p.is_file())
        except FileNotFoundError:
            return 0

    def has_room(self, size: int) -> bool:
        return self.size_bytes + _HEADER.size + size <= self.max_bytes

    # -- writing -----------------------------------------------------------------------------
    def append(self, data: bytes) -> None:
        """Append one record and fsync it; raises SpoolFull when the cap would be exceeded and
        DiskFull when the file system has no room (the partial frame is cut off again)."""
        with self._lock:
            if not self.has_room(len(data)):
                raise SpoolFull(
                    f"spool holds {self.size_bytes} of {self.max_bytes} bytes; "
                    f"cannot add {len(data)} more"
                )
            fd = self._fd_for_append()
            size = self._segments[self._writer_segment]
            frame = _HEADER.pack(len(data), zlib.crc32(data)) + data
            try:
                _write_all(fd, frame)
                os.fsync(fd)
            except OSError as exc:
                self._roll_back(fd, size)
                if exc.errno not in _NO_SPACE:
                    raise
                self.disk_full = f"disk full: {exc.strerror} ({self.directory})"
                raise DiskFull(self.disk_full) from exc
            self.disk_full = None
            self._segments[self._writer_segment] += len(frame)
            self._counts[self._writer_segment] += 1
            self._records += 1

    def _roll_back(self, fd: int, size: int) -> None:
        """Cut a partly written frame off, so the next append does not land behind garbage."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError:
            # Cannot cut it: seal this segment (the next append opens a new one); the stray
            # bytes are skipped as damage when read.
            self._segments[self._writer_segment] = os.fstat(fd).st_size
            os.close(fd)
            self._fd = None

    def _fd_for_append(self) -> int:
        size = self._segments.get(self._writer_segment)
        if self._fd is not None and size is not None and size < self.segment_bytes:
            return self._fd
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._writer_segment += 1
        path = self.directory / _segment_name(self._writer_segment)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._segments[self._writer_segment] = 0
        self._counts[self._writer_segment] = 0
        fsync_dir(self.directory)
        return self._fd

    # -- reading ---------------------------------------------------------------------------
    def peek(self) -> SpoolRecord | None:
        """The oldest intact record, or None when the spool is empty. A damaged frame met here
        (the disk changed under us) is quarantined and skipped, never raised."""
        with self._lock:
            while self._segments:
                number = min(self._segments)
                path = self.directory / _segment_name(number)
                data = _read_frame(path, self._head_offset)
                if data is not None:
                    end = self._head_offset + _HEADER.size + len(data)
                    return SpoolRecord(number, self._head_offset, end, data)
                if not self._skip_damage(number, path):
                    return None
            return None

    def _skip_damage(self, number: int, path: Path) -> bool:
        """Resync past a bad frame at the head; False if nothing is left to read."""
        buf = path.read_bytes()
        on_disk = len(buf)
        if number == self._writer_segment and self._head_offset >= on_disk:
            return False  # read everything appended so far
        scan = scan_frames(buf, self._head_offset)
        self._quarantine(path, scan)
        before = self._counts[number]
        self._counts[number] = len(scan.frames)
        self._records += len(scan.frames) - before
        if scan.frames:
            self._head_offset = scan.frames[0][0]
            return True
        if number == self._writer_segment:
            self._head_offset = on_disk  # later appends land after the damage
            return False
        self._drop_segment(number)
        return True

    def pop(self, record: SpoolRecord) -> None:
        """Forget ``record`` (it is stored); deletes its segment once fully consumed."""
        with self._lock:
            if record.segment != min(self._segments, default=None):
                raise ValueError("pop() must be given the record peek() returned")
            self._records -= 1
            self._counts[record.segment] -= 1
            self._head_offset = record.end
            if self._counts[record.segment]:
                return
            # A crash before this unlink only means the segment is replayed again: harmless,
            # since writing the same points twice overwrites them.
            self._drop_segment(record.segment)

    def _drop_segment(self, number: int) -> None:
        if number == self._writer_segment and self._fd is not None:
            os.close(self._fd)
            self._fd = None
        (self.directory / _segment_name(number)).unlink()
        del self._segments[number]
        del self._counts[number]
        self._head_offset = 0

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_frame(path: Path, offset: int) -> bytes | None:
    """The record of the intact frame at ``offset``, else None (short, damaged or absent)."""
    with path.open("rb") as f:
        f.seek(offset)
        header = f.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return None
        length, crc = _HEADER.unpack(header)
        if length > MAX_RECORD_BYTES:
            return None
        data = f.read(length)
    return data if len(data) == length and zlib.crc32(data) == crc else None


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rewrite(path: Path, buf: bytes, frames: tuple[tuple[int, int], ...]) -> None:
    """Replace ``path`` atomically by its intact frames only."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as f:
        for start, end in frames:
            f.write(buf[start:end])
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    fsync_dir(path.parent)
