"""Process lifecycle of the long-running programs: SIGTERM and SIGINT become one stop event."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType


def stop_on_signals(log: logging.Logger, stop: threading.Event | None = None) -> threading.Event:
    """Set (and return) ``stop`` on SIGTERM/SIGINT, logging which signal asked for it.

    Call from the main thread; the program's main loop waits on the event and shuts down in
    order (drain, acknowledge, disconnect) instead of dying inside a signal handler.
    """
    event = stop if stop is not None else threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return event
