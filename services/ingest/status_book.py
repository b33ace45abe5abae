"""Idempotent ``device_status``: the last state ingest stored per device and when it began.

A status message is a bare ``online``/``offline`` (a Last Will cannot carry a time), so its
point is stamped on arrival; a redelivery or a retained re-send would then be a new point each
time. The book keeps, per (site, kind, device_id), the state and the time of the message that
started it: a status equal to the book's re-writes the same point at the same time (an
overwrite), only a change takes the new receive time. The book is saved (atomic rename, fsync)
before the batch carrying its points is stored, so a crash in between still converges: the
redelivered message finds its state already booked and gets the booked time.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

from common.durable import fsync_dir
from common.payloads import StatusReading

log = logging.getLogger(__name__)

FILE_NAME = "device_status.json"
MAX_DEVICES = 200_000
"""Beyond this many devices new ones are stamped on arrival, unbooked (memory bound; the
device gate already bounds how many distinct devices get this far)."""

Key = tuple[str, str, str]


class StatusBook:
    """Owned by the encode thread: ``stamp`` each status, ``save`` before handing a batch on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._states: dict[Key, tuple[bool, int]] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            for key, (online, since_ms) in raw.items():
                site, kind, device_id = key.split("/")
                self._states[(site, kind, device_id)] = (bool(online), int(since_ms))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError) as exc:
            # Losing the book costs one extra point per device, never data: start afresh.
            self._states.clear()
            log.error(
                "device status book unreadable; starting a new one",
                extra={"path": str(self.path), "error": str(exc)},
            )

    def __len__(self) -> int:
        return len(self._states)

    def stamp(self, status: StatusReading) -> StatusReading:
        """The status as it is to be stored: at its state's booked time if unchanged."""
        key = (status.site, status.kind, status.device_id)
        booked = self._states.get(key)
        if booked is not None and booked[0] == status.online:
            return status if booked[1] == status.ts_ms else replace(status, ts_ms=booked[1])
        if booked is None and len(self._states) >= MAX_DEVICES:
            return status
        self._states[key] = (status.online, status.ts_ms)
        self._dirty = True
        return status

    def save(self) -> None:
        """Make the book durable if it changed since the last save. Raises OSError."""
        if not self._dirty:
            return
        data = {f"{s}/{k}/{d}": [online, ts] for (s, k, d), (online, ts) in self._states.items()}
        partial = self.path.with_name(self.path.name + ".partial")
        with partial.open("w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, self.path)
        fsync_dir(self.path.parent)
        self._dirty = False
