"""The notifier outbox: journaled items reload in order, delivered ones are compacted away, a
torn last line from a crash is ignored, and a delivery queue retries reloaded items first."""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from services.alerts.metrics import AlertsMetrics
from services.alerts.notifiers import outbox as outbox_module
from services.alerts.notifiers.base import DeliveryError, DeliveryQueue
from services.alerts.notifiers.outbox import Outbox, OutboxError
from tests.helpers import wait_until


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_appended_items_reload_in_order_without_the_delivered_ones(tmp_path: Path) -> None:
    path = tmp_path / "state" / "webhook.outbox"
    box = Outbox(path)
    seqs = [box.append(f"k{i}", {"n": i}) for i in range(4)]
    box.done(seqs[0])
    box.done(seqs[2])
    assert _records(path)[-2:] == [{"done": 0}, {"done": 2}]
    box.close()  # as after a crash: nothing else is written at close

    again = Outbox(path)
    assert again.pending == [(seqs[1], {"n": 1}), (seqs[3], {"n": 3})]
    # Opening compacted the file: only the live records are left, with their keys.
    assert [(r["seq"], r["key"]) for r in _records(path)] == [(1, "k1"), (3, "k3")]
    # New items never reuse a sequence number of a reloaded one.
    assert again.append("k4", [1, 2]) == 4
    again.close()
    assert [item for _, item in Outbox(path).pending] == [{"n": 1}, {"n": 3}, [1, 2]]


def test_a_fully_delivered_outbox_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "apprise.outbox"
    box = Outbox(path)
    seqs = [box.append(f"k{i}", i) for i in range(3)]
    for seq in seqs:
        box.done(seq)
    assert path.read_bytes() == b""
    box.append("k3", 3)
    box.close()
    assert Outbox(path).pending == [(3, 3)]


def test_done_records_are_compacted_while_items_stay_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "COMPACT_AFTER_DONE", 3)
    path = tmp_path / "webhook.outbox"
    box = Outbox(path)
    seqs = [box.append(f"k{i}", i) for i in range(6)]
    for seq in seqs[:4]:
        box.done(seq)
    # The third "done" (as many as live items) rewrote the file; only the fourth is a record.
    records = _records(path)
    assert [r["seq"] for r in records if "seq" in r] == [3, 4, 5]
    assert [r["done"] for r in records if "done" in r] == [3]
    box.close()
    assert [item for _, item in Outbox(path).pending] == [4, 5]


def test_a_torn_last_line_after_a_crash_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "webhook.outbox"
    box = Outbox(path)
    box.append("k0", {"n": 0})
    box.append("k1", {"n": 1})
    box.close()
    with open(path, "ab") as f:
        f.write(b'{"item":{"n":2},"key":"k2","se')  # the crash cut this record short

    again = Outbox(path)
    assert [item for _, item in again.pending] == [{"n": 0}, {"n": 1}]
    # The fragment is gone, so the next record starts on a line of its own.
    again.append("k2", {"n": 2})
    again.close()
    assert [item for _, item in Outbox(path).pending] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_a_second_process_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    path = tmp_path / "webhook.outbox"
    box = Outbox(path)
    with pytest.raises(OutboxError, match="in use"):
        Outbox(path)
    box.close()
    Outbox(path).close()


def test_an_unwritable_state_dir_is_an_outbox_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OutboxError, match="cannot open"):
        Outbox(blocker / "webhook.outbox")


class Receiver:
    """A deliver callable that fails until told to accept, recording what it accepted."""

    def __init__(self) -> None:
        self.accept = threading.Event()
        self.got: list[object] = []

    def __call__(self, payload: object) -> None:
        if not self.accept.is_set():
            raise DeliveryError("receiver down")
        self.got.append(payload)


def _queue(
    path: Path, receiver: Receiver, metrics: AlertsMetrics, max_items: int = 10
) -> DeliveryQueue:
    return DeliveryQueue(
        "webhook",
        receiver,
        metrics,
        base_s=0.01,
        max_s=0.05,
        max_items=max_items,
        outbox=Outbox(path),
        key=lambda payload: str(payload),
    )


def test_a_restarted_queue_delivers_the_last_runs_items_first_in_order(tmp_path: Path) -> None:
    path = tmp_path / "webhook.outbox"
    down = Receiver()
    queue = _queue(path, down, AlertsMetrics())
    for n in range(3):
        queue.put({"n": n})
    queue.close(timeout=0.2)  # the receiver stayed down: nothing delivered
    assert down.got == []

    up = Receiver()
    metrics = AlertsMetrics()
    queue = _queue(path, up, metrics)
    assert metrics.registry.get_sample_value("alerts_delivery_queue", {"notifier": "webhook"}) == 3
    queue.put({"n": 3})
    up.accept.set()
    wait_until(lambda: len(up.got) >= 4, timeout=20)
    queue.close(timeout=5)
    assert up.got == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]
    assert path.read_bytes() == b""  # all delivered: nothing reloads next time


def test_a_full_queue_drops_and_counts_without_journaling(tmp_path: Path) -> None:
    path = tmp_path / "webhook.outbox"
    metrics = AlertsMetrics()
    queue = _queue(path, Receiver(), metrics, max_items=10)
    for n in range(12):
        queue.put(n)
    queue.close(timeout=0.1)
    dropped = metrics.registry.get_sample_value(
        "alerts_deliveries_total", {"notifier": "webhook", "outcome": "dropped"}
    )
    assert dropped == 2
    box = Outbox(path)
    assert [item for _, item in box.pending] == list(range(10))
    box.close()


def test_reloading_more_than_the_queue_limit_keeps_the_oldest_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "webhook.outbox"
    box = Outbox(path)
    for n in range(12):
        box.append(str(n), n)
    box.close()
    metrics = AlertsMetrics()
    queue = _queue(path, Receiver(), metrics, max_items=10)
    assert queue.pending() == 10
    queue.close(timeout=0.1)
    dropped = metrics.registry.get_sample_value(
        "alerts_deliveries_total", {"notifier": "webhook", "outcome": "dropped"}
    )
    assert dropped == 2
    box = Outbox(path)
    assert [item for _, item in box.pending] == list(range(10))
    box.close()


class FullDisk:
    """``os.write`` on the outbox's files as a disk with ``room`` bytes left answers it: a
    short write while some room is left, then ENOSPC; other descriptors write as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, under: Path, room: int) -> None:
        self.room = room
        self.under = str(under)
        real_write = os.write

        def write(fd: int, data: bytes | memoryview) -> int:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if not target.startswith(self.under):
                return real_write(fd, data)
            if self.room <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written = real_write(fd, bytes(data[: self.room]))
            self.room -= written
            return written

        monkeypatch.setattr(os, "write", write)

    def make_room(self) -> None:
        self.room = 1 << 30


def test_a_short_write_on_a_full_disk_is_not_durable_and_never_corrupts_the_next_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "webhook.outbox"
    box = Outbox(path)
    box.append("k0", {"n": 0})
    disk = FullDisk(monkeypatch, tmp_path, room=10)  # less than one record
    with pytest.raises(OSError):
        box.append("k1", {"n": 1})  # a short write, then no room: not reported durable
    with pytest.raises(OSError):
        box.append("k2", {"n": 2})
    assert [r["key"] for r in _records(path)] == ["k0"]  # rolled back to the whole record
    disk.make_room()
    box.append("k3", {"n": 3})
    box.close()
    assert [item for _, item in Outbox(path).pending] == [{"n": 0}, {"n": 3}]


def test_items_the_full_outbox_refused_are_journaled_late_once_it_has_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "webhook.outbox"
    metrics = AlertsMetrics()
    queue = DeliveryQueue(
        "webhook",
        Receiver(),  # down: everything stays queued
        metrics,
        base_s=0.01,
        max_s=0.05,
        outbox=Outbox(path),
        key=str,
    )
    # The first record (42 bytes) fits, the next is cut short.
    disk = FullDisk(monkeypatch, tmp_path, room=50)
    for n in range(5):
        queue.put({"n": n})
    assert len(_records(path)) == 1
    unjournaled = {"notifier": "webhook"}
    assert metrics.registry.get_sample_value("alerts_delivery_unjournaled", unjournaled) == 4
    disk.make_room()
    wait_until(lambda: len(_records(path)) == 5)
    queue.close(timeout=0.1)
    assert [item for _, item in Outbox(path).pending] == [{"n": n} for n in range(5)]


def test_the_shutdown_log_counts_what_the_full_outbox_kept_and_what_it_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "webhook.outbox"
    queue = _queue(path, Receiver(), AlertsMetrics())
    FullDisk(monkeypatch, tmp_path, room=50)  # one record (42 bytes) fits
    for n in range(3):
        queue.put({"n": n})
    caplog.set_level(logging.ERROR)
    queue.close(timeout=0.1)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("undelivered")]
    assert (record.__dict__["kept"], record.__dict__["lost"]) == (1, 2)
    assert "1 kept in the outbox" in record.getMessage()
    assert [item for _, item in Outbox(path).pending] == [{"n": 0}]
