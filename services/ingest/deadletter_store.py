"""The durable dead-letter store: every message ingest rejects, kept whole on local disk so it
can be listed and re-driven once its cause is fixed (a clock, a registry entry, a schema).

JSON lines in numbered segment files (``00000001.jsonl`` ...) under ``INGEST_DEADLETTER_DIR``.
Letters are buffered by whichever thread rejects a message and written and fsynced by the store
thread before the batch holding that message is acknowledged, so an acknowledged rejection is on
disk. The store is bounded: past ``max_bytes`` the oldest segments are deleted and their letters
counted in ``dropped``. A failed write (disk full) is cut back and raised; the letters stay
buffered for the next try. Another process (``facility-ingest deadletters redrive``) may take
the segments away between two writes: each write goes under an ``flock`` and looks the newest
segment up again.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from common.durable import fsync_dir
from common.payloads import MAX_PAYLOAD_BYTES
from common.timestamps import ms_to_iso

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
CLAIMED = "redrive"
"""Subfolder holding the segments a re-drive took, until it has written its results back."""
_LOCK = ".lock"
_REDRIVE_LOCK = ".redrive.lock"

LetterOrigin = Literal["live", "spool_replay", "redrive"]
"""Where the rejection happened: judging a live message, replaying the spool (the database
refused a spooled line), or re-judging a stored letter."""


class StoredLetter(BaseModel):
    """One rejected message as kept on disk: the whole payload (up to the contract's size
    limit), why, when it arrived and where it was rejected."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    topic: str
    payload_b64: str
    payload_bytes: int
    payload_sha256: str
    payload_truncated: bool
    code: str
    reason: str
    received_at: str
    received_ms: int
    origin: LetterOrigin
    program: str = "ingest"
    redrives: int = 0
    """How many re-drives judged it and it still failed."""

    @classmethod
    def build(
        cls,
        topic: str,
        payload: bytes,
        code: str,
        reason: str,
        received_ms: int,
        origin: LetterOrigin,
    ) -> StoredLetter:
        kept = payload[:MAX_PAYLOAD_BYTES]
        return cls(
            id=uuid.uuid4().hex,
            topic=topic,
            payload_b64=base64.b64encode(kept).decode("ascii"),
            payload_bytes=len(payload),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            payload_truncated=len(kept) < len(payload),
            code=code,
            reason=reason[:2000],
            received_at=ms_to_iso(received_ms),
            received_ms=received_ms,
            origin=origin,
        )

    def payload(self) -> bytes:
        return base64.b64decode(self.payload_b64)

    def failed_again(self, code: str, reason: str) -> StoredLetter:
        return self.model_copy(
            update={"code": code, "reason": reason[:2000], "redrives": self.redrives + 1}
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """Segments a re-drive took out of the store: their letters, and the files to delete once
    the results are written back."""

    letters: list[StoredLetter]
    files: list[Path]
    unreadable: int


def _segment_name(number: int) -> str:
    return f"{number:08d}{SUFFIX}"


def read_letters(path: Path) -> tuple[list[StoredLetter], int]:
    """The letters of one segment and how many lines were unreadable (a torn last line)."""
    letters: list[StoredLetter] = []
    bad = 0
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return letters, 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            letters.append(StoredLetter.model_validate_json(line))
        except ValidationError:
            bad += 1
    return letters, bad


class StoreBusy(Exception):
    """Another re-drive is running on this store."""


class DeadLetterStore:
    """Bounded, rotated JSON-lines store. ``add`` from any thread; ``flush`` from one."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = 8 * 1024**2,
        *,
        create: bool = True,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.dropped = 0
        """Letters deleted with the oldest segments to stay within ``max_bytes`` (this run)."""
        self.error: str | None = None
        """Why the last flush failed; None once one succeeds."""
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        if create:  # a reader (``list``) leaves a missing store missing
            directory.mkdir(parents=True, exist_ok=True)

    # -- writing -----------------------------------------------------------------------------
    def add(self, letter: StoredLetter) -> None:
        line = letter.model_dump_json().encode() + b"\n"
        with self._lock:
            self._pending.append(line)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Write and fsync every buffered letter; returns how many. Raises OSError (the letters
        stay buffered, the segment is cut back to whole lines)."""
        with self._lock:
            if not self._pending:
                return 0
            data = b"".join(self._pending)
            count = len(self._pending)
            with self._locked():
                try:
                    self._append(data)
                except OSError as exc:
                    self.error = f"{exc.strerror or exc} ({self.directory})"
                    raise
                self._pending.clear()
                self.error = None
                self._bound()
            return count

    @contextmanager
    def _locked(self, name: str = _LOCK, blocking: bool = True) -> Iterator[None]:
        fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreBusy(f"another re-drive holds {self.directory / name}") from exc
            yield
        finally:
            os.close(fd)  # releases the lock

    def segments(self) -> list[Path]:
        found = []
        for path in self.directory.glob("*" + SUFFIX):
            if path.stem.isdigit():
                found.append((int(path.stem), path))
        return [path for _, path in sorted(found)]

    def _append(self, data: bytes) -> None:
        segments = self.segments()
        path = segments[-1] if segments else None
        if path is None or path.stat().st_size >= self.segment_bytes:
            number = int(path.stem) + 1 if path is not None else 1
            path = self.directory / _segment_name(number)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = _whole_lines(fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                except OSError:
                    log.exception("dead letters: could not cut a failed write back")
                raise
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.directory)

    def _bound(self) -> None:
        segments = self.segments()
        sizes = [path.stat().st_size for path in segments]
        total = sum(sizes)
        dropped = 0
        # The newest segment stays even if alone it is over the bound: it holds the latest.
        while total > self.max_bytes and len(segments) > 1:
            oldest = segments.pop(0)
            letters, bad = read_letters(oldest)
            oldest.unlink()
            total -= sizes.pop(0)
            dropped += len(letters) + bad
        if dropped:
            fsync_dir(self.directory)
            self.dropped += dropped
            log.warning(
                "dead letters: store full, dropped the oldest",
                extra={
                    "dropped": dropped,
                    "dropped_total": self.dropped,
                    "max_bytes": self.max_bytes,
                },
            )

    # -- reading -----------------------------------------------------------------------------
    @property
    def claimed_dir(self) -> Path:
        return self.directory / CLAIMED

    def files(self) -> list[Path]:
        """Every file holding letters: segments, and segments a re-drive took and has not
        finished (a re-drive that died keeps them there; they are still listed)."""
        claimed = sorted(self.claimed_dir.glob("*" + SUFFIX)) if self.claimed_dir.is_dir() else []
        return claimed + self.segments()

    def size_bytes(self) -> int:
        total = 0
        for path in self.files():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def letters(self) -> tuple[list[StoredLetter], int]:
        """Every stored letter, oldest first, once each, and the count of unreadable lines."""
        seen: set[str] = set()
        out: list[StoredLetter] = []
        unreadable = 0
        for path in self.files():
            letters, bad = read_letters(path)
            unreadable += bad
            for letter in letters:
                if letter.id not in seen:
                    seen.add(letter.id)
                    out.append(letter)
        return out, unreadable

    # -- re-drive ----------------------------------------------------------------------------
    @contextmanager
    def redriving(self) -> Iterator[None]:
        """Held for a whole re-drive: one at a time per store. Raises StoreBusy."""
        with self._locked(_REDRIVE_LOCK, blocking=False):
            yield

    def claim(self) -> Claim:
        """Take every segment out of the store (the service starts a new one at its next
        write); segments an earlier re-drive left behind are taken again."""
        with self._locked():
            self.claimed_dir.mkdir(exist_ok=True)
            stamp = time.time_ns()
            for path in self.segments():
                os.replace(path, self.claimed_dir / f"{stamp}-{path.name}")
            fsync_dir(self.claimed_dir)
            fsync_dir(self.directory)
        files = sorted(self.claimed_dir.glob("*" + SUFFIX))
        seen: set[str] = set()
        letters: list[StoredLetter] = []
        unreadable = 0
        for path in files:
            found, bad = read_letters(path)
            unreadable += bad
            for letter in found:
                if letter.id not in seen:
                    seen.add(letter.id)
                    letters.append(letter)
        return Claim(letters, files, unreadable)

    def finish(self, claim: Claim, keep: list[StoredLetter]) -> None:
        """Write back what is kept, then delete the claimed files. A crash in between leaves
        both: the next re-drive sees each letter once (by id)."""
        for letter in keep:
            self.add(letter)
        self.flush()
        for path in claim.files:
            path.unlink(missing_ok=True)
        fsync_dir(self.claimed_dir)


def _whole_lines(fd: int) -> int:
    """Cut a torn last line (a crash mid-write) off the segment; returns its size."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    data = os.pread(fd, size, 0)
    keep = data.rfind(b"\n") + 1
    os.ftruncate(fd, keep)
    os.fsync(fd)
    log.warning("dead letters: cut a torn last line", extra={"cut_bytes": size - keep})
    return keep
