"""The last stage: gets a batch durably stored (database, else spool) and replays the spool.

Policy per answer: stored -> done; 429/5xx/connection -> retry with backoff, then spool;
a per-line refusal (see ``salvage``) -> bisect, dead-letter the bad lines, keep the good;
401/403/404, any other refusal, or most of a batch refused -> spool at once, loud error,
unhealthy until a write succeeds again. A full spool blocks (back-pressure), never drops.
A database that stops answering opens the circuit breaker: batches are spooled without a write
and only a short-timeout probe is made until it answers again, so acknowledgements never wait
for attempts x timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from services.ingest.batcher import Origin
from services.ingest.metrics import IngestMetrics
from services.ingest.origins import OriginsDamaged, pack, unpack
from services.ingest.retry import CircuitBreaker, RetryPolicy
from services.ingest.salvage import BISECT_MAX_WRITES, Salvage, write_salvaging
from services.ingest.sinks.base import Outcome, Sink, WriteResult
from services.ingest.spool import Spool, SpoolFull
from services.ingest.stats import is_self_report

log = logging.getLogger(__name__)

SINK_REJECTED = "sink_rejected"
"""Dead-letter reason for a line the database itself refused, e.g. a field type clash."""

OnBadLine = Callable[[Origin | None, bytes, str, bool], None]
"""``(origin, line, reason, replayed)``: the database refused ``line`` for its own content;
``replayed`` when the line came from the spool."""


class Abandoned(Exception):
    """Shutting down while the batch could be stored nowhere: leave it unacknowledged."""


class SinkHealth(StrEnum):
    """What the last write or probe said about the database (``/healthz`` ``sink.state``)."""

    OK = "ok"
    UNREACHABLE = "unreachable"  # connection error, timeout, 429/5xx: retried, spooled
    REFUSED = "refused"  # 401/403/404 or whole batches refused: needs a person
    UNKNOWN = "unknown"  # nothing written or probed yet


@dataclass(slots=True)
class SinkState:
    state: SinkHealth = SinkHealth.UNKNOWN
    last_error: str | None = None
    last_status: int | None = None
    spool_full: bool = False


class Writer:
    """Owned by one thread. ``store`` returns once the batch is in the database or the spool."""

    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        policy: RetryPolicy,
        metrics: IngestMetrics,
        on_bad_line: OnBadLine,
        stopping: threading.Event | None = None,
        replay_budget_s: float = 1.0,
        breaker: CircuitBreaker | None = None,
        bisect_max_writes: int = BISECT_MAX_WRITES,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.policy = policy
        self.metrics = metrics
        self.on_bad_line = on_bad_line
        self.stopping = stopping or threading.Event()
        self.replay_budget_s = replay_budget_s
        self.breaker = breaker or CircuitBreaker(failures_to_open=policy.attempts)
        self.bisect_max_writes = bisect_max_writes
        self.status = SinkState()
        self._replay_failures = 0
        self._next_replay_s = 0.0
        # Durations of recent writes (one per write, not per message) for ingest_stats.
        self.write_durations_s: deque[float] = deque(maxlen=4096)
        metrics.spool_max_bytes.set(spool.max_bytes)
        self._spool_gauges()

    # -- storing -----------------------------------------------------------------------------
    def store(self, body: bytes, origins: list[Origin] | None = None) -> bool:
        """Store one batch: True if in the database, False if spooled.

        Raises Abandoned only when stopping with nowhere to put it.
        """
        if not body:
            return True
        if self.spool.empty and not self.breaker.open:
            attempts = 1 if self.stopping.is_set() else self.policy.attempts
            stored, body, origins = self._write_with_retries(body, origins, attempts)
            if stored:
                return True
        # Once anything is spooled, new batches queue behind it so replay keeps their order;
        # while the breaker is open they go there without a write.
        self._append_to_spool(body, origins)
        return False

    def _write_with_retries(
        self, body: bytes, origins: list[Origin] | None, attempts: int
    ) -> tuple[bool, bytes, list[Origin] | None]:
        """(stored, what is left to spool, its origins). Each attempt's bad-line indices refer
        to the body that attempt wrote, so the body shrinks attempt by attempt, never from the
        original."""
        failures = 0
        while True:
            salvage = self._write_once(body, origins)
            if salvage.result.stored:
                return True, b"", None
            body = salvage.remaining(body)
            origins = _without(origins, salvage)
            if salvage.result.outcome is Outcome.REFUSED or self.breaker.open:
                return False, body, origins
            failures += 1
            if failures >= attempts:
                return False, body, origins
            self.metrics.retries.inc()
            delay = self.policy.delay(failures, salvage.result.retry_after_s)
            if self.stopping.wait(delay):
                return False, body, origins

    def _write_once(
        self, body: bytes, origins: list[Origin] | None, replayed: bool = False
    ) -> Salvage:
        started = time.perf_counter()
        salvage = write_salvaging(self.sink, body, self.bisect_max_writes)
        elapsed = time.perf_counter() - started
        self.metrics.write_seconds.labels(salvage.result.outcome.value).observe(elapsed)
        self.write_durations_s.append(elapsed)
        for index, line, reason in salvage.bad:
            origin = origins[index] if origins is not None else None
            try:
                self.on_bad_line(origin, line, reason, replayed)
            except Exception:
                # A failed dead letter must not stop the pipeline; the line is logged here.
                log.exception("could not dead-letter a refused line", extra={"line": line[:200]})
        self._note(salvage.result, elapsed)
        if salvage.result.stored:
            points = body.count(b"\n") - len(salvage.bad)
            if is_self_report(body):
                self.metrics.self_report_stored.inc(points)
            else:
                self.metrics.stored.inc(points)
                self.metrics.batch_points.observe(points)
        return salvage

    def _note(self, result: WriteResult, took_s: float = 0.0) -> None:
        """Track sink health and the breaker; log loudly once per change, not once per batch."""
        self._trip(result, took_s)
        if result.stored:
            if self.status.state is not SinkHealth.OK:
                log.info("database accepting writes", extra={"sink": self.sink.name})
            self.status.state, self.status.last_error = SinkHealth.OK, None
            self.metrics.sink_up.set(1)
            return
        # Only a check brings REJECTED here (a write's refusals come through salvage): an answer
        # refusing a ping is a sink failure too.
        refused = result.outcome in (Outcome.REFUSED, Outcome.REJECTED)
        state = SinkHealth.REFUSED if refused else SinkHealth.UNREACHABLE
        if state is not self.status.state or result.detail != self.status.last_error:
            level = logging.ERROR if refused else logging.WARNING
            if not refused:
                hint = "retrying; batches go to the spool meanwhile"
            elif result.status in (401, 403, 404):
                hint = "check INFLUX_TOKEN and that INFLUX_BUCKET exists (INGEST_CREATE_BUCKET)"
            else:
                hint = "check INFLUX_URL (scheme, port, any proxy); batches go to the spool"
            log.log(
                level,
                f"database {state} the write: {hint}",
                extra={"sink": self.sink.name, "status": result.status, "error": result.detail},
            )
        self.status.state, self.status.last_error = state, result.detail
        self.status.last_status = result.status
        self.metrics.sink_up.set(0)

    def _append_to_spool(self, body: bytes, origins: list[Origin] | None = None) -> None:
        if not body:
            return
        points = body.count(b"\n")
        # Spooled with their origins, so a line refused at replay is dead-lettered as the
        # message it came from (topic, payload, receive time) and can be re-driven.
        record = pack(body, origins)
        while True:
            try:
                self.spool.append(record)
            except SpoolFull as exc:
                if not self.status.spool_full:
                    log.error(
                        "spool full: holding acknowledgements until the database drains it",
                        extra={"spool_bytes": self.spool.size_bytes, "error": str(exc)},
                    )
                self.status.spool_full = True
                # Drain if we can; otherwise wait, holding this batch's acks (back-pressure).
                if not self.replay(force=True) and self.stopping.wait(self._replay_wait()):
                    raise Abandoned from exc
                continue
            self.status.spool_full = False
            if not is_self_report(body):
                self.metrics.spooled.inc(points)
            self._spool_gauges()
            return

    def _trip(self, result: WriteResult, took_s: float) -> None:
        was_open = self.breaker.open
        if result.stored:
            self.breaker.succeeded()
        elif result.outcome is Outcome.RETRY:
            self.breaker.failed(took_s)
        if self.breaker.open and not was_open:
            log.warning(
                "database not answering: spooling without writing and probing until it does",
                extra={"sink": self.sink.name, "seconds": round(took_s, 2)},
            )

    def probe(self) -> None:
        """Ask the sink whether it answers again (after an outage, without traffic); the
        sink's check has a short timeout, so a database that does not answer costs little."""
        started = time.perf_counter()
        result = self.sink.check()
        self._note(result, time.perf_counter() - started)

    # -- replaying ---------------------------------------------------------------------------
    def replay_due(self) -> bool:
        return not self.spool.empty and time.monotonic() >= self._next_replay_s

    def seconds_until_replay(self) -> float | None:
        if self.spool.empty:
            return None
        return max(0.0, self._next_replay_s - time.monotonic())

    def _replay_wait(self) -> float:
        return max(0.05, self._next_replay_s - time.monotonic())

    def replay(self, force: bool = False) -> bool:
        """Replay spooled batches oldest first for up to the budget; True if any was stored."""
        if self.spool.empty or (not force and not self.replay_due()):
            return False
        if self.breaker.open:
            self.probe()
            if self.breaker.open:
                self._replay_failures += 1
                self._next_replay_s = time.monotonic() + self.policy.delay(self._replay_failures)
                return False
        deadline = time.monotonic() + self.replay_budget_s
        progressed = False
        while time.monotonic() < deadline:
            record = self.spool.peek()
            if record is None:
                break
            try:
                body, origins = unpack(record.data)
            except OriginsDamaged as exc:
                # Past the frame's CRC this means a bug, not the disk: keep going without it.
                log.error("spool: unreadable batch skipped", extra={"error": str(exc)})
                self.spool.pop(record)
                continue
            salvage = self._write_once(body, origins, replayed=True)
            if not salvage.result.stored:
                self._replay_failures += 1
                delay = self.policy.delay(self._replay_failures, salvage.result.retry_after_s)
                self._next_replay_s = time.monotonic() + delay
                break
            self._replay_failures = 0
            self.spool.pop(record)
            if not is_self_report(body):
                self.metrics.replayed.inc(body.count(b"\n") - len(salvage.bad))
            progressed = True
            if self.spool.empty:
                log.info("spool replayed completely")
        self._spool_gauges()
        return progressed

    def _spool_gauges(self) -> None:
        self.metrics.spool_bytes.set(self.spool.size_bytes)
        self.metrics.spool_batches.set(self.spool.records)


def _without(origins: list[Origin] | None, salvage: Salvage) -> list[Origin] | None:
    if origins is None or not salvage.bad:
        return origins
    drop = {index for index, _, _ in salvage.bad}
    return [o for i, o in enumerate(origins) if i not in drop]
