"""SIGTERM and SIGINT turn into the stop event the programs' main loops wait on."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from common.runtime import stop_on_signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_sets_the_stop_event(signum: int, caplog: pytest.LogCaptureFixture) -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop = stop_on_signals(logging.getLogger("test"))
        assert not stop.is_set()
        with caplog.at_level(logging.INFO):
            os.kill(os.getpid(), signum)  # handled in the main thread before kill() returns
            assert stop.wait(5)
        assert caplog.records[-1].__dict__["signal"] == signal.Signals(signum).name
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
