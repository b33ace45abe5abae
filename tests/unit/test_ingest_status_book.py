"""The device status book: an unchanged status keeps its first time (an overwrite), a change
takes the new one, and what was saved before a crash decides the redelivery's time."""

from __future__ import annotations

from pathlib import Path

from common.payloads import StatusReading
from services.ingest.status_book import StatusBook


def status(online: bool, ts_ms: int, device: str = "bin-001") -> StatusReading:
    return StatusReading("ewaste", "ewaste_bin", device, ts_ms, online)


def test_a_resent_status_keeps_the_time_its_state_began(tmp_path: Path) -> None:
    book = StatusBook(tmp_path / "book.json")
    assert book.stamp(status(True, 100)).ts_ms == 100
    assert book.stamp(status(True, 200)).ts_ms == 100  # re-sent: same point again
    assert book.stamp(status(False, 300)).ts_ms == 300  # a change: a new point
    assert book.stamp(status(True, 400)).ts_ms == 400
    assert book.stamp(status(True, 400, device="bin-002")).ts_ms == 400  # per device


def test_a_redelivery_after_a_crash_gets_the_saved_time(tmp_path: Path) -> None:
    path = tmp_path / "book.json"
    book = StatusBook(path)
    book.stamp(status(True, 100))
    book.save()  # saved before the batch is stored; then the process dies
    assert StatusBook(path).stamp(status(True, 900)).ts_ms == 100


def test_an_unsaved_book_is_not_remembered(tmp_path: Path) -> None:
    path = tmp_path / "book.json"
    StatusBook(path).stamp(status(True, 100))
    assert StatusBook(path).stamp(status(True, 900)).ts_ms == 900


def test_an_unreadable_book_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "book.json"
    path.write_text("{not json")
    book = StatusBook(path)
    assert len(book) == 0 and book.stamp(status(True, 5)).ts_ms == 5
    book.save()
    assert len(StatusBook(path)) == 1
