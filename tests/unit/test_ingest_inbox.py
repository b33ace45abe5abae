"""The paho -> encode hand-over keeps order, wakes a sleeping reader and stays bounded."""

from __future__ import annotations

import threading

from services.ingest.inbox import Inbox


def test_items_come_out_in_arrival_order_in_bursts() -> None:
    inbox: Inbox[int] = Inbox(100)
    for i in range(10):
        assert inbox.put(i)
    assert inbox.take(4) == [0, 1, 2, 3]
    assert inbox.take(100) == [4, 5, 6, 7, 8, 9]
    assert inbox.take(100) == []


def test_a_sleeping_reader_is_woken_by_a_put() -> None:
    inbox: Inbox[str] = Inbox(10)
    woke = threading.Event()

    def reader() -> None:
        if inbox.wait(30):
            woke.set()

    thread = threading.Thread(target=reader)
    thread.start()
    inbox.put("reading")
    assert woke.wait(30)
    thread.join(30)
    assert inbox.take(10) == ["reading"]


def test_a_full_inbox_holds_the_writer_until_the_reader_takes() -> None:
    inbox: Inbox[int] = Inbox(2)
    assert inbox.put(1) and inbox.put(2)
    assert not inbox.put(3, timeout=0.01)  # full: refused after the timeout, nothing added
    assert len(inbox) == 2
    done = threading.Event()

    def writer() -> None:
        if inbox.put(3, timeout=30):
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert inbox.take(1) == [1]
    assert done.wait(30)
    thread.join(30)
    assert inbox.take(10) == [2, 3]


def test_closing_frees_a_writer_blocked_on_a_full_inbox() -> None:
    inbox: Inbox[int] = Inbox(1)
    assert inbox.put(1)
    refused = threading.Event()

    def writer() -> None:
        if not inbox.put(2):  # no timeout: only closing can end this wait
            refused.set()

    thread = threading.Thread(target=writer)
    thread.start()
    inbox.close()
    assert refused.wait(30)
    thread.join(30)
    assert not inbox.put(3)
    assert inbox.closed and inbox.take(10) == [1]  # what was inside can still be taken
