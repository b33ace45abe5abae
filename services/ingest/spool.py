"""The durable spool: batches the database did not take, appended and fsynced, replayed in order.

A spool is a directory of append-only segment files (``00000001.seg`` ...). Each record is a
line-protocol batch framed as ``length (u32 BE) | crc32 (u32 BE) | bytes``; a record whose frame
is short or whose CRC does not match is a torn write from a crash and is cut off at start-up.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
SUFFIX = ".seg"
MAX_RECORD_BYTES = 256 * 1024**2  # a length above this is garbage, not a batch


class SpoolFull(Exception):
    """Appending would exceed the size cap; the caller must hold its acks (back-pressure)."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One spooled batch and where it lives (for :meth:`Spool.pop`)."""

    segment: int
    offset: int
    end: int
    data: bytes


def _segment_name(number: int) -> str:
    return f"{number:08d}{SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    # A new or deleted file's directory entry is only durable once the directory is synced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def scan_segment(path: Path) -> tuple[int, int]:
    """Return ``(records, valid_bytes)``: the intact prefix of a segment file."""
    records = 0
    offset = 0
    with path.open("rb") as f:
        while True:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                break
            length, crc = _HEADER.unpack(header)
            if length > MAX_RECORD_BYTES:
                break
            data = f.read(length)
            if len(data) < length or zlib.crc32(data) != crc:
                break
            records += 1
            offset += _HEADER.size + length
    return records, offset


class Spool:
    """Append-only, size-capped, crash-safe FIFO of byte records. Thread-safe."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 8 * 1024**2) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: dict[int, int] = {}  # segment number -> size in bytes
        self._records = 0
        self._head_offset = 0  # read position in the oldest segment
        self._writer: BinaryIO | None = None
        self._writer_segment = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    # -- start-up ---------------------------------------------------------------------------
    def _recover(self) -> None:
        for path in sorted(self.directory.glob("*" + SUFFIX)):
            try:
                number = int(path.stem)
            except ValueError:
                continue
            records, valid = scan_segment(path)
            size = path.stat().st_size
            if valid < size:
                log.warning(
                    "spool: cutting torn tail off segment",
                    extra={"segment": path.name, "kept_bytes": valid, "cut_bytes": size - valid},
                )
                with path.open("r+b") as f:
                    f.truncate(valid)
                    os.fsync(f.fileno())
            if records == 0:
                path.unlink()
                continue
            self._segments[number] = valid
            self._records += records
        # Never append to a recovered segment: a fresh one keeps recovery logic trivial.
        self._writer_segment = max(self._segments, default=0)
        if self._segments:
            _fsync_dir(self.directory)
            log.info(
                "spool: found batches to replay",
                extra={"batches": self._records, "bytes": self.size_bytes},
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

    def has_room(self, size: int) -> bool:
        return self.size_bytes + _HEADER.size + size <= self.max_bytes

    # -- writing -----------------------------------------------------------------------------
    def append(self, data: bytes) -> None:
        """Append one record and fsync it; raises SpoolFull when the cap would be exceeded."""
        with self._lock:
            if not self.has_room(len(data)):
                raise SpoolFull(
                    f"spool holds {self.size_bytes} of {self.max_bytes} bytes; "
                    f"cannot add {len(data)} more"
                )
            writer = self._writer_for_append()
            frame = _HEADER.pack(len(data), zlib.crc32(data)) + data
            writer.write(frame)
            writer.flush()
            os.fsync(writer.fileno())
            self._segments[self._writer_segment] += len(frame)
            self._records += 1

    def _writer_for_append(self) -> BinaryIO:
        size = self._segments.get(self._writer_segment)
        if self._writer is not None and size is not None and size < self.segment_bytes:
            return self._writer
        if self._writer is not None:
            self._writer.close()
        self._writer_segment += 1
        path = self.directory / _segment_name(self._writer_segment)
        self._writer = path.open("ab")
        self._segments[self._writer_segment] = 0
        _fsync_dir(self.directory)
        return self._writer

    # -- reading ---------------------------------------------------------------------------
    def peek(self) -> SpoolRecord | None:
        """The oldest record, or None when the spool is empty."""
        with self._lock:
            if not self._segments:
                return None
            number = min(self._segments)
            path = self.directory / _segment_name(number)
            with path.open("rb") as f:
                f.seek(self._head_offset)
                header = f.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    raise OSError(f"spool segment {path.name} ends inside a record header")
                length, crc = _HEADER.unpack(header)
                data = f.read(length)
            if len(data) < length or zlib.crc32(data) != crc:
                raise OSError(f"spool segment {path.name} is corrupt at {self._head_offset}")
            end = self._head_offset + _HEADER.size + length
            return SpoolRecord(number, self._head_offset, end, data)

    def pop(self, record: SpoolRecord) -> None:
        """Forget ``record`` (it is stored); deletes its segment once fully consumed."""
        with self._lock:
            if record.segment != min(self._segments, default=None):
                raise ValueError("pop() must be given the record peek() returned")
            self._records -= 1
            self._head_offset = record.end
            if record.end < self._segments[record.segment]:
                return
            # A crash before this unlink only means the segment is replayed again: harmless,
            # since writing the same points twice overwrites them.
            if record.segment == self._writer_segment and self._writer is not None:
                self._writer.close()
                self._writer = None
            (self.directory / _segment_name(record.segment)).unlink()
            del self._segments[record.segment]
            self._head_offset = 0

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
