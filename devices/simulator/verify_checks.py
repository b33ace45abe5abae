"""The checks behind ``facility-simulator verify``: what a run must leave behind (from an
in-process replay), what InfluxDB and the broker hold, and the PASS/FAIL verdict per item."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from common.devices import Registry, load_registry
from common.influx import InfluxClient
from common.mqtt import Message, MqttLink
from common.payloads import Reading, Rejection, parse_message
from common.schema import ALERT_MEASUREMENT, DISPATCH_MEASUREMENT
from common.settings import CommonSettings
from common.timestamps import ms_to_iso
from common.topics import Topics
from devices.simulator.expectations import check
from devices.simulator.run import Window
from devices.simulator.scenario import Expectation, Scenario

PointKey = tuple[str, str]  # measurement, device_id
Fields = dict[str, float | int | bool]
# Alerts may be stamped a little after the window (a resolution at the stream's watermark).
ALERT_MARGIN_MS = 3_600_000
DISPATCH_DUE_MS = 2 * 3_600_000  # a truck round takes well under this
_METRIC = re.compile(r'^ingest_messages_rejected_total\{[^}]*reason="([^"]+)"[^}]*\}\s+(\S+)$')


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    result: str = ""  # PASS / FAIL, or SKIP / INFO for items that never fail the run

    def __post_init__(self) -> None:
        if not self.result:
            object.__setattr__(self, "result", "PASS" if self.ok else "FAIL")


@dataclass(slots=True)
class Expected:
    """What the run must have produced, from replaying the same scenario, seed and window."""

    scenario: str
    window: Window
    registry: Registry
    topics: Topics
    expectations: tuple[Expectation, ...]
    points: dict[PointKey, set[int]]
    rejections: Counter[str]
    replay: dict[str, Any]
    scripted_dispatches: dict[str, tuple[str, ...]]  # dispatch_id -> bins
    silent_fault_devices: frozenset[str] = frozenset()

    @property
    def window_text(self) -> str:
        return f"{ms_to_iso(self.window.start_ms)} -> {ms_to_iso(self.window.end_ms)}"

    @property
    def measurements(self) -> list[str]:
        return sorted({m for m, _ in self.points})

    @property
    def bounds(self) -> tuple[int, int]:
        stamps = [ts for s in self.points.values() for ts in s]
        return min([self.window.start_ms, *stamps]), max([self.window.end_ms, *stamps])

    def devices_where(self, *types: str) -> list[str]:
        return sorted({e.device for e in self.expectations if e.type in types})


@dataclass(slots=True)
class Observed:
    points: dict[PointKey, set[int]]
    series: dict[str, list[tuple[int, Fields]]]
    alerts: list[dict[str, Any]]
    dispatches: list[dict[str, Any]]
    retained: dict[str, dict[str, Any]]
    rejected: Counter[str] | None
    notes: list[str] = field(default_factory=list)


def expected_from_replay(
    scenario: Scenario,
    settings: CommonSettings,
    window: Window,
    replay: dict[str, Any],
    replay_file: Path,
) -> Expected:
    """Judge every replayed message as a receiver would now (a backfill's past ``ts`` is
    fine, a skewed clock 20 years ahead is not) and collect the points it must store."""
    topics = Topics(settings.mqtt_topic_prefix)
    points: dict[PointKey, set[int]] = {}
    rejections: Counter[str] = Counter()
    with replay_file.open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            if item["retain"]:
                continue  # statuses (online/offline) and dispatch statuses, not telemetry
            result = parse_message(item["topic"], item["payload"].encode(), topics)
            if isinstance(result, Rejection):
                rejections[result.code] += 1
            elif isinstance(result, Reading):
                points.setdefault((result.measurement, result.device_id), set()).add(result.ts_ms)
    scripted = {
        f"{scenario.name}-{index}": tuple(event.stops)
        for index, event in enumerate(scenario.events)
        if event.type == "dispatch"
    }
    return Expected(
        scenario.name,
        window,
        load_registry(settings.devices_file),
        topics,
        tuple(scenario.expect),
        points,
        rejections,
        replay,
        scripted,
        frozenset(silent.devices or ())
        if (silent := scenario.faults.get("silent"))
        else frozenset(),
    )


class RetainedStatuses:
    """The retained ``P/dispatch/{id}/status`` of the scenario's scripted dispatches."""

    def __init__(self, settings: CommonSettings, dispatch_ids: Iterable[str]) -> None:
        topics = Topics(settings.mqtt_topic_prefix)
        self.wanted = {topics.dispatch_status(d): d for d in dispatch_ids}
        self.link = MqttLink(settings, "facility-simulator-verify")
        self.link.set_message_handler(self._on_message)
        self.link.add_on_connect(self._subscribe)
        self._lock = threading.Lock()
        self._statuses: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        if self.wanted:
            self.link.start()

    def stop(self) -> None:
        if self.wanted:
            self.link.stop()

    def _subscribe(self, client: mqtt.Client, _session_present: bool) -> None:
        client.subscribe([(topic, 1) for topic in self.wanted])

    def _on_message(self, msg: Message) -> None:
        try:
            status = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(status, dict) and msg.topic in self.wanted:
            with self._lock:
                self._statuses[self.wanted[msg.topic]] = status

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            statuses = dict(self._statuses)
        if self.wanted and not self.link.connected.is_set():
            statuses["_error"] = {"error": self.link.last_error or "not connected to the broker"}
        return statuses


def observe(
    reader: InfluxClient,
    expected: Expected,
    retained: dict[str, dict[str, Any]],
    metrics_url: str | None,
) -> Observed:
    low, high = expected.bounds
    points: dict[PointKey, set[int]] = {}
    series: dict[str, list[tuple[int, Fields]]] = {}
    for measurement in expected.measurements:
        for row in reader.query(_select_all(measurement, low, high)):
            device = str(row.values.get("device_id") or row.tags.get("device_id", ""))
            ts = int(row.values["time"])
            points.setdefault((measurement, device), set()).add(ts)
            values = {
                k: v
                for k, v in row.values.items()
                if isinstance(v, int | float | bool) and k != "time"
            }
            series.setdefault(device, []).append((ts, values))
    for readings in series.values():
        readings.sort(key=lambda item: item[0])
    late = high + ALERT_MARGIN_MS
    alerts = [r.values for r in reader.query(_select_all(ALERT_MEASUREMENT, low, late))]
    dispatches = [r.values for r in reader.query(_select_all(DISPATCH_MEASUREMENT, low, late))]
    observed = Observed(points, series, alerts, dispatches, retained, None)
    if metrics_url:
        try:
            observed.rejected = ingest_rejections(metrics_url)
        except (httpx.HTTPError, ValueError) as exc:
            observed.notes.append(f"ingest metrics unreadable: {exc}")
    return observed


def _select_all(measurement: str, low_ms: int, high_ms: int) -> str:
    # Measurement names come from the contract's schema and the bounds are ints: no injection.
    where = f"time >= {int(low_ms)}ms AND time <= {int(high_ms)}ms"
    return f'SELECT * FROM "{measurement}" WHERE {where}'  # noqa: S608


def ingest_rejections(metrics_url: str) -> Counter[str]:
    """``ingest_messages_rejected_total`` by reason, from facility-ingest's /metrics."""
    response = httpx.get(metrics_url, timeout=10.0)
    response.raise_for_status()
    counts: Counter[str] = Counter()
    for line in response.text.splitlines():
        match = _METRIC.match(line.strip())
        if match:
            counts[match.group(1)] += int(float(match.group(2)))
    return counts


# -- the verdict ---------------------------------------------------------------------------


def judge(
    expected: Expected,
    observed: Observed | None,
    summary: Mapping[str, Any] | None,
    error: str | None,
) -> list[Check]:
    checks: list[Check] = []
    if summary is not None:
        checks.append(_summary_matches(expected.replay, summary))
    if observed is None:
        return [*checks, Check("InfluxDB", False, error or "no answer")]
    checks += [_stored(expected, observed, m) for m in expected.measurements]
    checks.append(_dead_letters(expected, observed))
    checks += [_outcome(e, expected, observed) for e in expected.expectations]
    checks += _alerts(expected, observed)
    checks += _dispatches(expected, observed)
    return checks


def _summary_matches(replay: Mapping[str, Any], summary: Mapping[str, Any]) -> Check:
    keys = ("messages", "faults", "expected_rejections")
    differ = [k for k in keys if replay.get(k) != summary.get(k)]
    if differ:
        detail = "; ".join(f"{k}: run {summary.get(k)} vs replay {replay.get(k)}" for k in differ)
        return Check("run summary = replay", False, f"different run? {detail}")
    total = summary.get("messages_total")
    return Check("run summary = replay", True, f"{total} telemetry messages, same faults")


def _stored(expected: Expected, observed: Observed, measurement: str) -> Check:
    want_total = stored_total = 0
    wrong: list[str] = []
    devices = {d for m, d in (*expected.points, *observed.points) if m == measurement}
    for device in sorted(devices):
        want = expected.points.get((measurement, device), set())
        got = observed.points.get((measurement, device), set())
        want_total += len(want)
        stored_total += len(want & got)
        if want != got:
            wrong.append(f"{device} missing {len(want - got)} extra {len(got - want)}")
    detail = f"{stored_total}/{want_total} readings on {len(devices)} device(s)"
    if wrong:
        more = f" (+{len(wrong) - 4} more)" if len(wrong) > 4 else ""
        detail += ": " + ", ".join(wrong[:4]) + more
    return Check(f"stored {measurement}", not wrong, detail)


def _dead_letters(expected: Expected, observed: Observed) -> Check:
    want = dict(sorted(expected.rejections.items()))
    if observed.rejected is None:
        note = "; ".join(observed.notes) or "pass --ingest-metrics-url to compare"
        return Check("dead-lettered", True, f"expected {want}; {note}", "SKIP")
    short = {
        code: (n, observed.rejected.get(code, 0))
        for code, n in want.items()
        if observed.rejected.get(code, 0) < n
    }
    if short:
        text = ", ".join(f"{c} {got}/{n}" for c, (n, got) in short.items())
        return Check("dead-lettered", False, f"ingest rejected too few: {text}")
    return Check("dead-lettered", True, f"ingest rejected at least {want}")


def _outcome(e: Expectation, expected: Expected, observed: Observed) -> Check:
    name = f"{e.type} {e.device}"
    outcome = check(e, observed.series, expected.registry)
    if outcome.ok or e.type != "bin_overflows":
        return Check(name, outcome.ok, outcome.detail)
    # The scenario lets the bin overflow when nobody comes; a working alert -> dispatch ->
    # truck loop may empty it first. Either way the bin was full; both are right.
    emptied = _emptied_after_full(observed.series.get(e.device, []))
    if emptied is not None:
        return Check(
            name, True, f"{outcome.detail}; emptied by a truck at {ms_to_iso(emptied)} first"
        )
    return Check(name, False, outcome.detail)


def _emptied_after_full(readings: list[tuple[int, Fields]]) -> int | None:
    full = False
    for ts, fields in readings:
        fill = fields.get("fill_pct")
        full = full or (fill is not None and float(fill) >= 90)
        if full and fill is not None and float(fill) < 5:
            return ts
    return None


def _alert_rows(observed: Observed, rule: str, device: str) -> list[dict[str, Any]]:
    return sorted(
        (a for a in observed.alerts if a.get("rule") == rule and a.get("device_id") == device),
        key=lambda a: int(a["time"]),
    )


def _alerts(expected: Expected, observed: Observed) -> list[Check]:
    checks = []
    for device in expected.devices_where("bin_fill_above", "bin_overflows"):
        rows = [a for a in _alert_rows(observed, "bin_full", device) if a["state"] == "firing"]
        detail = f"first at {ms_to_iso(int(rows[0]['time']))}" if rows else "never fired"
        checks.append(Check(f"alert bin_full fired {device}", bool(rows), detail))
    silent = expected.devices_where("device_silent")
    for device in silent:
        rows = _alert_rows(observed, "device_offline", device)
        fired = next((int(a["time"]) for a in rows if a["state"] == "firing"), None)
        resolved = next(
            (int(a["time"]) for a in rows if a["state"] == "resolved" and fired is not None
             and int(a["time"]) > fired),
            None,
        )  # fmt: skip
        ok = fired is not None and resolved is not None
        detail = (
            f"fired {ms_to_iso(fired) if fired else 'never'}, "
            f"resolved {ms_to_iso(resolved) if resolved else 'never'}"
        )
        checks.append(Check(f"alert device_offline fired+resolved {device}", ok, detail))
    # Devices the scenario never silences: an offline alert for them in the middle of the
    # window is a false alarm (the end-of-run 'offline' statuses are real and excluded).
    end = expected.window.end_ms - 60_000
    false = sorted(
        {
            str(a["device_id"])
            for a in observed.alerts
            if a.get("rule") == "device_offline"
            and a.get("state") == "firing"
            and int(a["time"]) < end
            and a.get("device_id") not in silent
            and a.get("device_id") not in expected.silent_fault_devices
        }
    )
    # A false alarm fails: the simulator keeps its connections within a minute of each other
    # and facility-alerts allows for that lateness before it calls a device silent.
    checks.append(
        Check(
            "device_offline elsewhere",
            not false,
            f"{len(false)} other device(s) alerted offline mid-window"
            + (f" (false alarm): {', '.join(false[:8])}" if false else ""),
        )
    )
    return checks


def _dispatches(expected: Expected, observed: Observed) -> list[Check]:
    checks = []
    error = observed.retained.get("_error", {}).get("error")
    for dispatch_id, stops in expected.scripted_dispatches.items():
        status = observed.retained.get(dispatch_id)
        state = status.get("state") if status else None
        done = status.get("stops_done", []) if status else []
        ok = state == "completed" and set(done) == set(stops)
        detail = (
            f"state {state}, stops done {done}, collected {status.get('collected_kg')} kg"
            if status
            else f"no retained status ({error or 'not received yet'})"
        )
        checks.append(Check(f"dispatch {dispatch_id} completed", ok, detail))
    zones = sorted(
        {
            zone
            for device in expected.devices_where("bin_fill_above", "bin_overflows")
            if (zone := expected.registry.zone_of(device))
        }
    )
    planned: dict[str, set[str]] = {}
    planned_ms: dict[str, int] = {}
    completed: set[str] = set()
    for row in observed.dispatches:
        if row.get("state") == "planned":
            planned.setdefault(str(row.get("zone")), set()).add(str(row.get("dispatch_id")))
            planned_ms[str(row.get("dispatch_id"))] = int(row["time"])
        if row.get("state") == "completed":
            completed.add(str(row.get("dispatch_id")))
    for zone in zones:
        ids = planned.get(zone, set())
        checks.append(
            Check(
                f"alerts planned a dispatch in {zone}",
                bool(ids),
                f"{len(ids)} planned: {', '.join(sorted(ids))}" if ids else "none planned",
            )
        )
    ours = {i for ids in planned.values() for i in ids}
    # A request planned near the window's end may reach the simulator after it stopped; one
    # planned DISPATCH_DUE_MS before the end must have been driven and completed.
    due = {i for i in ours if planned_ms[i] <= expected.window.end_ms - DISPATCH_DUE_MS}
    late = sorted(due - completed)
    checks.append(
        Check(
            "alert dispatches completed",
            not late,
            f"{len(ours & completed)} of {len(ours)} completed within the run"
            + (f"; not completed: {', '.join(late)}" if late else ""),
        )
    )
    return checks
