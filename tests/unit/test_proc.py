"""common.proc: a child started with die_with_parent() does not outlive its parent."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable

import psutil

from common.proc import die_with_parent
from tests.helpers import wait_until

# A parent that starts `sleep` with the helper, prints the child's pid and waits to be killed.
PARENT = """
import subprocess, sys, time
from common.proc import die_with_parent
child = subprocess.Popen(["sleep", "300"], preexec_fn=die_with_parent())
print(child.pid, flush=True)
time.sleep(300)
"""


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_child_is_terminated_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        assert not _gone(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        wait_until(lambda: _gone(child_pid), timeout=10)
    finally:
        if not _gone(child_pid):
            psutil.Process(child_pid).kill()


def test_asks_nothing_off_the_main_thread() -> None:
    # The signal fires when the forking *thread* exits: a worker thread must not use it.
    found: list[Callable[[], None] | None] = []
    worker = threading.Thread(target=lambda: found.append(die_with_parent()))
    worker.start()
    worker.join()
    assert found == [None]
    assert die_with_parent() is not None
