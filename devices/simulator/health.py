"""The simulator's container health: a heartbeat file its run keeps fresh while every broker
connection is up, and ``facility-simulator healthcheck``, which judges it.

The simulator serves no HTTP, and "a process named facility-simulator exists" is always true in
a container (PID 1 is ``docker-init -- facility-simulator``), so health is what the run itself
reports: connected to the broker, and alive enough to say so every few seconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from common.mqtt import MqttLink

HEARTBEAT_S: Final = 5.0
# Six missed heartbeats: the run is hung (or gone) even if the file still says "connected".
STALE_S: Final = 30.0


def write_beat(path: Path, connected: int, total: int, now: float) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps({"at": now, "connected": connected, "connections": total}), encoding="utf-8"
    )
    os.replace(tmp, path)


class Heartbeat:
    """Rewrites ``path`` every HEARTBEAT_S with how many of the links are connected."""

    def __init__(
        self,
        path: Path,
        links: Callable[[], Iterable[MqttLink]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.links = links
        self.clock = clock
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def beat(self) -> None:
        states = [link.connected.is_set() for link in self.links()]
        write_beat(self.path, sum(states), len(states), self.clock())

    def _run(self) -> None:
        while True:
            self.beat()
            if self.done.wait(HEARTBEAT_S):
                return

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.thread.start()

    def stop(self) -> None:
        """End of the run: the file goes, so a finished simulator is not reported healthy."""
        self.done.set()
        self.thread.join(HEARTBEAT_S * 2)
        self.path.unlink(missing_ok=True)


def judge(path: Path, now: float) -> tuple[bool, str]:
    """(healthy, one line why) from the heartbeat file."""
    try:
        beat = json.loads(path.read_text(encoding="utf-8"))
        at, connected, total = float(beat["at"]), int(beat["connected"]), int(beat["connections"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"no heartbeat in {path} ({exc.__class__.__name__}): not running"
    age = now - at
    if age > STALE_S:
        return False, f"heartbeat {age:.0f} s old (over {STALE_S:.0f} s): hung"
    if total == 0 or connected < total:
        return False, f"{connected} of {total} broker connections up"
    return True, f"{connected} broker connection(s) up, heartbeat {age:.0f} s old"


def healthcheck_main(health_file: Path | None) -> int:
    """``facility-simulator healthcheck``: exit 0 healthy, 1 not (a line says why)."""
    if health_file is None:
        print("facility-simulator healthcheck: SIMULATOR_HEALTH_FILE is not set")
        return 1
    ok, why = judge(health_file, time.time())
    print(f"facility-simulator healthcheck: {why}")
    return 0 if ok else 1
