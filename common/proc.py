"""Child processes that do not outlive their parent: Linux ``PR_SET_PDEATHSIG``.

Shared by the ``make run`` supervisor and the test harness, which both start long-running
servers that must not linger when the parent is killed without cleaning up.
"""

from __future__ import annotations

import ctypes
import functools
import signal
import sys
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[[int, int], int] | None:
    try:
        prctl: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to send ``sig`` to the child when its parent dies.

    None (nothing to ask for) off Linux, and off the main thread: the signal fires when the
    *thread* that forked exits, so a child started from a worker thread would be killed as
    soon as that thread ends.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = _prctl()
    if prctl is None:
        return None
    signum = int(sig)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signum)

    return preexec
