"""The ingest pipeline: MQTT hand-over -> validate/encode/batch -> store -> acknowledge.

Three threads joined by bounded queues. paho's network thread only enqueues; the ``encode``
thread judges, enriches, encodes and batches; the ``store`` thread writes (or spools) each batch
and only then acknowledges its messages, in the order they arrived. When the database is slow
the queues fill, acknowledgements stop, and Receive Maximum makes the broker hold the rest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from common.devices import Registry
from common.identity import DeviceGate
from common.kinds import MAX_FUTURE_MS
from common.lineproto import encode_point
from common.messages import DeadLetter
from common.mqtt import Message
from common.payloads import Reading, Rejection, StatusReading
from common.timestamps import ms_to_iso
from common.topics import DeviceTopic, Topics
from services.ingest.batcher import Batch, Batcher, Origin
from services.ingest.deadletter_store import DeadLetterStore, LetterOrigin, StoredLetter
from services.ingest.inbox import Inbox
from services.ingest.judge import UNENCODABLE, Judge
from services.ingest.metrics import IngestMetrics
from services.ingest.stats import StatsReporter
from services.ingest.status_book import StatusBook
from services.ingest.writer import SINK_REJECTED, Abandoned, SinkHealth, Writer

log = logging.getLogger(__name__)

__all__ = ["DEADLETTER_SOURCE", "UNENCODABLE", "Inbound", "MemoTopics", "Pipeline"]

DEADLETTER_SOURCE = "ingest"
"""Who rejected a dead letter: its ``source`` field and its topic's last level."""
_LETTERS_RETRY_S = 1.0

Publish = Callable[[str, bytes], None]
AckFn = Callable[[list[int]], None]
"""Acknowledge these QoS 1 packet ids (current connection), in this order."""


class Inbound(NamedTuple):
    """A message as the network thread hands it over (a tuple: cheap to build on that thread)."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at_s: float
    generation: int
    """Which connection it arrived on (see ``Pipeline.new_connection``)."""


@dataclass(frozen=True, slots=True)
class MemoTopics(Topics):
    """Topics that remember parsed device topics: a fleet repeats the same few thousand topics,
    and re-validating prefix and ids per message was a third of the encode stage (cProfile)."""

    _seen: dict[str, DeviceTopic] = field(default_factory=dict, compare=False, repr=False)

    def parse_device_topic(self, topic: str) -> DeviceTopic:
        where = self._seen.get(topic)
        if where is None:
            where = Topics.parse_device_topic(self, topic)  # raises for bad topics: not cached
            if len(self._seen) >= 100_000:  # bounded against floods of distinct topics
                self._seen.clear()
            self._seen[topic] = where
        return where


_PROBE_EVERY_S = 5.0


class Pipeline:
    """Owns the encode and store threads; ``on_message`` is the MQTT link's message handler."""

    def __init__(
        self,
        topics: Topics,
        registry: Registry | None,
        writer: Writer,
        metrics: IngestMetrics,
        publish: Publish,
        ack: AckFn,
        batch_size: int,
        flush_interval_s: float,
        inbox_size: int,
        reporter: StatsReporter | None = None,
        gate: DeviceGate | None = None,
        letters: DeadLetterStore | None = None,
        statuses: StatusBook | None = None,
        max_future_ms: int = MAX_FUTURE_MS,
    ) -> None:
        self.topics = MemoTopics(topics.prefix)
        self.registry = registry
        self.gate = gate
        """Judges each topic's (site, kind, device_id); on the encode thread only."""
        self.judge = Judge(self.topics, registry, gate, max_future_ms)
        self.letters = letters
        """Durable copies of dead letters, flushed before the acknowledgements that need them."""
        self.statuses = statuses
        self._letters_refused = False
        self.writer = writer
        self.metrics = metrics
        self.publish = publish
        self.ack = ack
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.deadletter_topic = topics.deadletter(DEADLETTER_SOURCE)
        self.reporter = reporter
        self.accepting = True
        self._inbox: Inbox[Inbound] = Inbox(inbox_size)  # closed and empty: end
        metrics.inbox_messages.set_function(lambda: len(self._inbox))
        # Two batches may wait while one is written: enough to overlap encoding and writing.
        self._batches: queue.Queue[Batch | None] = queue.Queue(maxsize=2)  # None: end
        self._generation = 0
        self._generation_lock = threading.Lock()
        self._encode_thread = threading.Thread(target=self._encode_loop, name="encode", daemon=True)
        self._store_thread = threading.Thread(target=self._store_loop, name="store", daemon=True)
        self.finished = threading.Event()

    # -- network thread --------------------------------------------------------------------
    def on_message(self, msg: Message) -> None:
        if not self.accepting:
            return  # shutting down: left unacknowledged, the broker redelivers it later
        # Blocks while the inbox is full: QoS 0 floods (Receive Maximum does not cover them) or
        # a broker ignoring Receive Maximum (MQTT 3.1.1). ``stop`` closes the inbox, which ends
        # the wait: a message refused then is left unacknowledged (QoS 0 is lost, as QoS 0 may).
        self._inbox.put(
            Inbound(msg.mid, msg.qos, msg.topic, bytes(msg.payload), time.time(), self._generation)
        )

    def new_connection(self) -> None:
        """A (re)connect: packet ids of the old connection mean nothing now. Their messages are
        redelivered by the broker, so acknowledging them by id could ack a different message."""
        with self._generation_lock:
            self._generation += 1

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._encode_thread.start()
        self._store_thread.start()

    def stop(self, timeout_s: float) -> bool:
        """Stop taking messages, store or spool what is in flight, acknowledge; True if done."""
        self.accepting = False
        self.writer.stopping.set()
        self._inbox.close()  # also frees paho's thread if it waits for room
        return self.finished.wait(timeout_s)

    # -- encode thread -----------------------------------------------------------------------
    def _encode_loop(self) -> None:
        batcher = Batcher(self.batch_size, self.flush_interval_s)
        stats = _Stats()
        inbox = self._inbox
        while True:
            wait = batcher.wait_s(time.monotonic())
            inbox.wait(0.5 if wait is None else wait)
            # Whole bursts at a time, but no more than fills the current batch, so a batch is
            # handed over as soon as it is full.
            for item in inbox.take(self.batch_size - len(batcher)):
                self._judge(item, batcher, stats)
            if inbox.closed and not len(inbox):
                self._hand_over(batcher.take(), stats)
                self._batches.put(None)
                return
            if batcher.due(time.monotonic()):
                self._hand_over(batcher.take(), stats)

    def _judge(self, item: Inbound, batcher: Batcher, stats: _Stats) -> None:
        mid, qos, topic, payload, received_s, generation = item
        received_ms = int(received_s * 1000)
        result = self.judge.parse(topic, payload, received_ms)
        ack = (mid, qos, generation)
        now = time.monotonic()
        if isinstance(result, Reading):
            stats.telemetry += 1
        elif isinstance(result, StatusReading):
            stats.status += 1
            if self.statuses is not None:
                result = self.statuses.stamp(result)
        else:
            stats.rejected_message(topic)
            self._dead_letter(topic, payload, result, received_ms, stats)
            batcher.add_ack(ack, now)
            return
        encoded = self.judge.line(result)
        if isinstance(encoded, Rejection):
            self._dead_letter(topic, payload, encoded, received_ms, stats)
            batcher.add_ack(ack, now)
            return
        line, event_ms = encoded
        batcher.add_point(line, (topic, payload, received_ms), event_ms, ack, now)

    def _dead_letter(
        self, topic: str, payload: bytes, why: Rejection, received_ms: int, stats: _Stats
    ) -> None:
        stats.rejected[why.code] += 1
        self._keep(topic, payload, why, received_ms, "live")
        if stats.rejected[why.code] <= 3 or log.isEnabledFor(logging.DEBUG):
            log.info(
                "message rejected",
                extra={"topic": topic[:200], "code": why.code, "reason": why.reason[:300]},
            )

    def _keep(
        self, topic: str, payload: bytes, why: Rejection, received_ms: int, origin: LetterOrigin
    ) -> None:
        """Publish the dead letter, and keep the whole message in the store for a re-drive."""
        if self.letters is not None:
            self.letters.add(
                StoredLetter.build(topic, payload, why.code, why.reason, received_ms, origin)
            )
        letter = DeadLetter.build(
            DEADLETTER_SOURCE, topic, payload, why.code, why.reason, ms_to_iso(received_ms)
        )
        self.publish(self.deadletter_topic, letter.model_dump_json().encode())

    def _hand_over(self, batch: Batch, stats: _Stats) -> None:
        if self.statuses is not None:
            try:
                self.statuses.save()  # before its points can be stored: see status_book
            except OSError as exc:
                log.error("could not save the device status book", extra={"error": str(exc)})
        stats.flush(self.metrics)
        if self.gate is not None:
            self.metrics.unknown_devices.set(self.gate.unknown_seen)
        if batch.acks:
            self._batches.put(batch)  # blocks while two batches wait: back-pressure

    # -- store thread ------------------------------------------------------------------------
    def _store_loop(self) -> None:
        writer = self.writer
        last_probe = time.monotonic()
        try:
            while True:
                until_replay = writer.seconds_until_replay()
                timeout = 0.5 if until_replay is None else min(0.5, until_replay)
                idle = False
                try:
                    batch = self._batches.get(timeout=timeout)
                except queue.Empty:
                    batch, idle = None, True
                if batch is None and not idle:
                    return
                if batch is not None:
                    try:
                        writer.store(batch.body(), batch.origins)
                    except Abandoned:
                        log.warning("stopping with a batch stored nowhere; left unacknowledged")
                        return
                    if not self._flush_letters(hold=True):
                        log.warning("stopping with dead letters kept nowhere; left unacknowledged")
                        return
                    self._acknowledge(batch)
                if self.reporter is not None and self.reporter.due(time.monotonic()):
                    self._report(self.reporter)
                if writer.replay_due():
                    writer.replay()
                    self._flush_letters(hold=False)
                elif (
                    idle
                    and writer.status.state in (SinkHealth.UNREACHABLE, SinkHealth.UNKNOWN)
                    and time.monotonic() - last_probe >= _PROBE_EVERY_S
                ):
                    # Idle and unhealthy: probe, so /healthz recovers without traffic.
                    last_probe = time.monotonic()
                    writer.probe()
        except Exception:
            log.exception("store thread crashed; exiting so the service restarts")
            raise
        finally:
            # Letters of lines refused at replay have no acknowledgement to wait for: last try.
            if not self._flush_letters(hold=False) and self.letters is not None:
                log.error(
                    "dead letters not kept on disk at stop (still published on MQTT)",
                    extra={"letters": self.letters.pending},
                )
            self.finished.set()

    def _report(self, reporter: StatsReporter) -> None:
        """Write the service's own figures like any batch (retried, else spooled). Here, on the
        store thread, so they never sit in front of a data batch's acknowledgements for longer
        than one small write, and never wait behind a full batch queue."""
        try:
            points = reporter.points(time.monotonic(), int(time.time() * 1000))
            self.writer.store(("\n".join(encode_point(*p) for p in points) + "\n").encode())
        except Abandoned:
            pass  # stopping with nowhere to put it: the next run's counters start again anyway
        except Exception:
            # Our own figures must never stop the data; the next interval carries the counters.
            log.exception("could not write ingest_stats")

    def _flush_letters(self, hold: bool) -> bool:
        """Dead letters on disk before the acknowledgements of their messages go out. A disk
        that refuses them holds the acknowledgements (the broker keeps the messages), as a
        full spool does; False when stopping while still refused."""
        letters = self.letters
        if letters is None:
            return True
        while True:
            try:
                letters.flush()
            except OSError as exc:
                if hold and not self._letters_refused:  # once per episode, not per retry
                    self._letters_refused = True
                    log.error(
                        "dead-letter store refuses writes: holding acknowledgements",
                        extra={"error": str(exc), "dir": str(letters.directory)},
                    )
                if not hold or self.writer.stopping.wait(_LETTERS_RETRY_S):
                    return False
                continue
            if self._letters_refused:
                self._letters_refused = False
                log.info("dead-letter store writes again", extra={"dir": str(letters.directory)})
            return True

    def _acknowledge(self, batch: Batch) -> None:
        with self._generation_lock:
            generation = self._generation
            mids = [mid for mid, qos, arrived_on in batch.acks if qos and arrived_on == generation]
            if mids:
                self.ack(mids)
        now = time.time()
        self.metrics.acked.inc(len(batch.acks))
        self.metrics.pipeline_lag.observe(time.monotonic() - batch.first_received_s)
        lag = self.metrics.lag
        for event_ms in batch.event_ms:
            lag.observe(now - event_ms / 1000)

    def on_bad_line(
        self, origin: Origin | None, line: bytes, reason: str, replayed: bool = False
    ) -> None:
        """The database refused a line on its own (400): dead-letter what it came from, with
        the time it was received (a line without an origin, e.g. self-report, is itself)."""
        if origin is not None:
            topic, payload, received_ms = origin
        else:
            topic, payload, received_ms = "", line, int(time.time() * 1000)
        where: LetterOrigin = "spool_replay" if replayed else "live"
        self.metrics.rejected.labels(SINK_REJECTED).inc()
        self._keep(topic, payload, Rejection(SINK_REJECTED, reason), received_ms, where)
        log.warning(
            "database refused a line; dead-lettered",
            extra={
                "topic": topic,
                "reason": reason[:300],
                "line": line[:200].decode("utf-8", "replace"),
            },
        )


class _Stats:
    """Per-batch tallies, pushed to Prometheus once per batch instead of once per message."""

    __slots__ = ("rejected", "status", "telemetry", "unparsed_status")

    def __init__(self) -> None:
        self.telemetry = 0
        self.status = 0
        self.unparsed_status = 0
        self.rejected: Counter[str] = Counter()

    def rejected_message(self, topic: str) -> None:
        if topic.endswith("/status"):
            self.unparsed_status += 1
        else:
            self.telemetry += 1

    def flush(self, metrics: IngestMetrics) -> None:
        if self.telemetry:
            metrics.received.labels("telemetry").inc(self.telemetry)
        if self.status or self.unparsed_status:
            metrics.received.labels("status").inc(self.status + self.unparsed_status)
        for reason, count in self.rejected.items():
            metrics.rejected.labels(reason).inc(count)
        self.telemetry = self.status = self.unparsed_status = 0
        self.rejected.clear()
