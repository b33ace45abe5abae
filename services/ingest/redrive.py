"""Re-driving dead letters: judge each stored message again with today's settings, registry and
clock; store what passes the way ingest stores (same judge, same salvaging writes to the same
sink; writing a point again overwrites it), keep what still fails with its new reason.

Safe while ingest runs: the letters are taken out of the store under its lock first (ingest
starts a new segment at its next write), and the results are written back before the taken
files are deleted. One re-drive at a time per store.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace

from common.payloads import Rejection, StatusReading
from common.topics import Topics
from services.ingest.deadletter_store import DeadLetterStore, StoredLetter
from services.ingest.judge import Judge
from services.ingest.retry import RetryPolicy
from services.ingest.salvage import write_salvaging
from services.ingest.service import device_gate, load_registry_for
from services.ingest.settings import IngestSettings
from services.ingest.sinks import Sink
from services.ingest.writer import SINK_REJECTED

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RedriveReport:
    """What a re-drive did (or, with ``dry_run``, would do)."""

    stored: int = 0
    still_failing: Counter[str] = field(default_factory=Counter)
    """By their new code."""
    not_selected: int = 0
    """Kept unchanged: another ``--code``."""
    not_written: int = 0
    """Passed, but the database did not take them: kept unchanged for the next re-drive."""
    unreadable: int = 0
    database_error: str | None = None
    failures: list[StoredLetter] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "stored": self.stored,
            "still_failing": dict(self.still_failing),
            "not_selected": self.not_selected,
            "not_written": self.not_written,
            "unreadable_lines": self.unreadable,
            "database_error": self.database_error,
        }


def rejudge(judge: Judge, letter: StoredLetter, now_ms: int) -> str | Rejection:
    """The line a stored letter becomes today, or why it still fails."""
    if letter.payload_truncated:
        return Rejection(letter.code, letter.reason)  # only its first part was kept
    payload = letter.payload()
    if not letter.topic:
        # A line the database refused that came from no message (ingest's own figures, or a
        # spool written before origins were kept): the line itself is what to store.
        text = payload.decode("utf-8", "replace").strip()
        return text if text else Rejection(letter.code, letter.reason)
    result = judge.parse(letter.topic, payload, now_ms)
    if isinstance(result, Rejection):
        return result
    if isinstance(result, StatusReading):
        # A status is stamped when it arrived, not when it is re-driven.
        result = replace(result, ts_ms=letter.received_ms)
    encoded = judge.line(result)
    return encoded if isinstance(encoded, Rejection) else encoded[0]


def redrive(
    settings: IngestSettings,
    store: DeadLetterStore,
    judge: Judge,
    sink: Sink | None,
    *,
    code: str | None = None,
    dry_run: bool = False,
    now_ms: int | None = None,
) -> RedriveReport:
    """Re-drive the store's letters (those of ``code`` only, if given). Raises StoreBusy."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    report = RedriveReport()
    with store.redriving():
        if dry_run:
            letters, report.unreadable = store.letters()
            claim = None
        else:
            claim = store.claim()
            letters, report.unreadable = claim.letters, claim.unreadable
        keep: list[StoredLetter] = []
        passing: list[tuple[StoredLetter, str]] = []
        for letter in letters:
            if code is not None and letter.code != code:
                report.not_selected += 1
                keep.append(letter)
                continue
            verdict = rejudge(judge, letter, now)
            if isinstance(verdict, Rejection):
                failed = letter.failed_again(verdict.code, verdict.reason)
                report.still_failing[verdict.code] += 1
                report.failures.append(failed)
                keep.append(failed)
            else:
                passing.append((letter, verdict))
        if dry_run or sink is None:
            report.stored = len(passing)
            return report
        keep += _write(settings, sink, passing, report)
        assert claim is not None
        store.finish(claim, keep)
    return report


def _write(
    settings: IngestSettings,
    sink: Sink,
    passing: list[tuple[StoredLetter, str]],
    report: RedriveReport,
) -> list[StoredLetter]:
    """Write the passing lines in batches; returns the letters to keep."""
    keep: list[StoredLetter] = []
    policy = RetryPolicy(
        base_s=settings.ingest_retry_base_ms / 1000,
        max_s=settings.ingest_retry_max_ms / 1000,
        attempts=settings.ingest_write_attempts,
    )
    size = settings.ingest_batch_size
    for start in range(0, len(passing), size):
        chunk = passing[start : start + size]
        if report.database_error is not None:
            keep += [letter for letter, _ in chunk]
            report.not_written += len(chunk)
            continue
        body = ("\n".join(line for _, line in chunk) + "\n").encode()
        for attempt in range(1, policy.attempts + 1):
            salvage = write_salvaging(sink, body, settings.ingest_bisect_max_writes)
            if salvage.result.stored:
                break
            if attempt < policy.attempts:
                time.sleep(policy.delay(attempt, salvage.result.retry_after_s))  # backoff
        if not salvage.result.stored:
            report.database_error = salvage.result.detail or f"HTTP {salvage.result.status}"
            keep += [letter for letter, _ in chunk]
            report.not_written += len(chunk)
            continue
        refused = {index: reason for index, _, reason in salvage.bad}
        for index, (letter, _) in enumerate(chunk):
            if index in refused:
                failed = letter.failed_again(SINK_REJECTED, refused[index])
                report.still_failing[SINK_REJECTED] += 1
                report.failures.append(failed)
                keep.append(failed)
            else:
                report.stored += 1
    return keep


def judge_for(settings: IngestSettings) -> Judge:
    """Today's judge: the settings' prefix, registry, unknown-device policy and future bound."""
    registry = load_registry_for(settings)
    gate = device_gate(settings, registry)
    return Judge(Topics(settings.mqtt_topic_prefix), registry, gate, settings.max_future_ms)
