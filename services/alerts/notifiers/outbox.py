"""An append-only, fsynced journal of one notifier's delivery queue, so undelivered items
survive a crash or restart and are retried first, in order, when the service starts again."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from pathlib import Path

from common.durable import fsync_dir

log = logging.getLogger(__name__)

# Rewrite the file once this many "done" records pile up (and outnumber the live items), so a
# receiver that is slow but never idle does not let the file grow without bound.
COMPACT_AFTER_DONE = 1024


class OutboxError(Exception):
    """The outbox cannot be opened (unwritable directory, or used by another process)."""


def _dump(record: dict[str, object]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written: a full disk answers a short write first and
    only the next write fails, so a short count is never taken for the whole record."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


class Outbox:
    """One file of JSON lines: ``{"seq": n, "key": k, "item": ...}`` when an item is queued
    and ``{"done": n}`` when it is delivered. Each record is written whole and fsynced before
    the call returns, or the file is cut back to the end of the last whole record and the call
    raises ``OSError`` (disk full): a failed write never corrupts the next record.
    Opening reloads the undelivered items in order and rewrites the file without the rest (a
    torn last line from a crash is ignored). Not thread-safe: the caller holds its own lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A separate lock file: compaction replaces the outbox file itself.
            self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OutboxError(f"cannot open {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise OutboxError(f"{path} is in use by another process") from exc
        self._live: dict[int, bytes] = {}  # seq -> its record line, in queue order
        self._done_records = 0
        self._next_seq = 0
        self._fd = -1
        self._good_size = 0  # the file's length up to the end of its last whole record
        self._torn = False  # a failed write may have left bytes past _good_size
        try:
            whole = self._load()
            try:
                self._rewrite()
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise
                # No room for a compacted copy: keep the file as it is, minus a torn tail.
                log.warning(
                    "outbox: disk full, not compacted at open",
                    extra={"path": str(path), "error": str(exc)},
                )
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                os.ftruncate(self._fd, whole)
                self._good_size = whole
        except OSError as exc:
            self.close()
            raise OutboxError(f"cannot use {path}: {exc.strerror or exc}") from exc

    @property
    def pending(self) -> list[tuple[int, object]]:
        """Undelivered items (seq, item), oldest first."""
        return [(seq, json.loads(line)["item"]) for seq, line in self._live.items()]

    def append(self, key: str, item: object) -> int:
        """Journal a queued item (durable on return); returns its sequence number."""
        seq = self._next_seq
        line = _dump({"seq": seq, "key": key, "item": item})
        self._write(line)
        self._next_seq += 1
        self._live[seq] = line
        return seq

    def done(self, seq: int) -> None:
        """Mark an item delivered; empties or compacts the file when that pays off."""
        if self._fd < 0 or self._live.pop(seq, None) is None:
            return  # closed while a delivery was in flight: it is simply redelivered later
        if not self._live:
            # Fully delivered: an empty file is the cheapest compaction of all.
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self._good_size, self._torn = 0, False
            self._done_records = 0
            return
        self._write(_dump({"done": seq}))
        self._done_records += 1
        if self._done_records >= max(COMPACT_AFTER_DONE, len(self._live)):
            self._rewrite()

    def clear(self) -> None:
        """Forget every item (they were handed on): an empty file, which needs no room."""
        self._live.clear()
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
        self._good_size, self._torn, self._done_records = 0, False, 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def _write(self, line: bytes) -> None:
        """Append one whole record, or roll the file back to the last whole one and raise."""
        if self._fd < 0:
            raise OSError(errno.EBADF, "outbox is closed")
        if self._torn:
            # An earlier roll-back failed: cut the partial record before appending after it.
            os.ftruncate(self._fd, self._good_size)
            self._torn = False
        try:
            _write_all(self._fd, line)
            os.fsync(self._fd)
        except OSError:
            self._torn = True
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._good_size)
                self._torn = False
            raise
        self._good_size += len(line)

    def _load(self) -> int:
        """Read the records; returns the length of the file up to its last whole record."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        lines = raw.split(b"\n")
        if lines[-1]:
            log.warning("outbox: ignoring a torn last record", extra={"path": str(self.path)})
        for number, line in enumerate(lines[:-1], start=1):
            try:
                record = json.loads(line)
                if "done" in record:
                    self._live.pop(int(record["done"]), None)
                else:
                    seq = int(record["seq"])
                    if "item" not in record:
                        raise KeyError("item")
                    self._live[seq] = line + b"\n"
                    self._next_seq = max(self._next_seq, seq + 1)
            except (ValueError, KeyError, TypeError):
                log.error(
                    "outbox: skipping a corrupt record",
                    extra={"path": str(self.path), "line": number},
                )
        return len(raw) - len(lines[-1])

    def _rewrite(self) -> None:
        """Replace the file by the live records only (atomically: temp file, fsync, rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        body = b"".join(self._live.values())
        try:
            with open(tmp, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()  # a half-written copy only takes the space that was short
            raise
        fsync_dir(self.path.parent)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._good_size, self._torn = len(body), False
        self._done_records = 0
