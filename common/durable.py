"""The one directory fsync of the programs' files (spool, dead letters, status book, outbox)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a created, renamed or deleted file's directory entry durable (POSIX only syncs it
    when the directory itself is synced)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
