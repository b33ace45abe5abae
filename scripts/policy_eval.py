"""Measure the collection policy, not just the code: 30 simulated days of the city's e-waste
bins under three policies, and a table of truck trips, route km, kg per trip, overflow hours.

- ``fixed weekly``: every zone collected once a week (its own weekday, 09:00), all its bins,
  split over the trucks by capacity (packed on the bins' weights, same routing as ours).
- ``fill threshold``: facility-alerts with only ``bin_full`` (>= 90 %) asking for trucks.
- ``ours``: facility-alerts with ``bin_full`` + ``bin_predicted_full`` (forecast) and zone
  batching of bins above the opportunistic level.

The city is the simulator's: its bin model (``devices.simulator.models.ewaste_bin``: drop-offs
by housing type, weekday and hour, fill from bulk density and volume, overflow time) and its
trucks (``devices.simulator.trucks``: timed itineraries, capacity). The two service policies run
the real ``facility-alerts`` as a subprocess against a local Mosquitto, fed at backfill speed in
event time; each step ends with a "clock" reading that makes the service publish an alert, a
barrier that says every dispatch request of that step has arrived.
Cities come from ``config/cities/<name>.yaml`` (``scripts.policy.cities``): trucks keep to
their shifts and bins to their access windows in every policy. Beside the policies: the
hindsight bound (``scripts.policy.bound``, CP-SAT on the whole drop-off trace) and OR-Tools'
routes for each of our dispatches (``scripts.policy.routes``).
``python -m scripts.policy_eval [--city today] [--seeds 1,2,3] [--days 30]``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from paho.mqtt import client as mqtt

from common.devices import Registry
from common.messages import DispatchRequest, DispatchStatus, DispatchStop
from common.timestamps import ms_to_iso
from devices.simulator.models.base import ModelContext, to_datetime
from devices.simulator.models.ewaste_bin import EwasteBin
from devices.simulator.trucks import Fleet, TruckRun
from scripts.policy import bound as hindsight
from scripts.policy.cities import CityDef, city_names, load_city
from scripts.policy.routes import compare
from services.alerts.dispatch.planner import Candidate, TruckSlot, plan_zone, route, tour_km
from services.alerts.settings import AlertsSettings
from tests.helpers import nodelay_client
from tests.servers import MosquittoServer, free_ports, wait_alerts_ready

ROOT = Path(__file__).resolve().parents[1]
P = "facility"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
FIXED_HOUR = 9  # local time the weekly rounds leave the depot
CLOCK_RULE = {
    "name": "policy_clock",
    "type": "threshold",
    "select": {"device": "policy-clock"},
    "field": "temperature_c",
    "when": ">= 50",
    "clear": "< 50",
}


def make_bins(city: CityDef, seed: int, start_ms: int) -> dict[str, EwasteBin]:
    bins = {}
    for d in city.registry.bins():
        site = city.registry.site(d.site)
        if site is None:
            raise ValueError(f"bin {d.id}: unknown site {d.site}")
        factor = city.fill_factor.get(d.id)
        params = {} if factor is None else {"fill_rate_factor": factor}
        bins[d.id] = EwasteBin(ModelContext(d, site, seed, start_ms, params=params))
    return bins


class City:
    """The city's bins and trucks, stepped in event time by the policy under test."""

    def __init__(self, city: CityDef, seed: int, start_ms: int) -> None:
        registry = city.registry
        self.registry = registry
        self.bins = make_bins(city, seed, start_ms)
        self.fleet = Fleet(registry, self.bins, city.shifts, city.windows)
        self.depot = (registry.depot.latitude, registry.depot.longitude)
        self.trips = 0
        self.route_km = 0.0
        self.unfit = 0  # runs that found no start inside a shift block with windows met
        self.window_missed = 0
        self.requests: list[DispatchRequest] = []
        self._due: list[tuple[int, int, TruckRun, int]] = []  # (at, order, run, stop | -1)
        self._order = 0

    def _push(self, at: int, run: TruckRun, stop: int) -> None:
        self._order += 1
        heapq.heappush(self._due, (at, self._order, run, stop))

    def dispatch(self, request: DispatchRequest, now_ms: int) -> None:
        """A truck takes the request: it leaves when free and empties the bins on its way."""
        run = self.fleet.plan(request, now_ms)
        self.trips += 1
        self.route_km += run.route_km
        self.unfit += not run.fits
        self.window_missed += sum(stop.blocked for stop in run.stops)
        self.requests.append(request)
        for i, stop in enumerate(run.stops):
            self._push(stop.arrive_ms, run, i)
        self._push(run.return_ms, run, -1)

    def trucks_until(self, t_ms: int) -> list[DispatchStatus]:
        """Serve every stop up to ``t_ms``; the statuses of the runs back at the depot."""
        done = []
        while self._due and self._due[0][0] <= t_ms:
            at, _, run, stop = heapq.heappop(self._due)
            if stop >= 0:
                self.fleet.serve(run, stop, at)
            else:
                done.append(self.fleet.finish(run, at))
        return done

    def readings(self, t_ms: int) -> dict[str, dict[str, Any]]:
        return {did: dict(b.reading(t_ms)) for did, b in self.bins.items()}

    def result(self) -> dict[str, Any]:
        trips = self.trips
        return {
            "trips": trips,
            "route_km": round(self.route_km, 1),
            "kg_per_trip": round(self.fleet.collected_kg / trips, 1) if trips else 0.0,
            "overflow_hours": round(sum(b.overflow_s for b in self.bins.values()) / 3600, 1),
            "unfit_runs": self.unfit,
            "window_missed": self.window_missed,
        }


def trucks_by_size(registry: Registry) -> list[TruckSlot]:
    return [
        TruckSlot(t.id, t.capacity_kg)
        for t in sorted(registry.trucks, key=lambda t: (-t.capacity_kg, t.id))
    ]


def run_fixed(city_def: CityDef, days: int, seed: int) -> dict[str, Any]:
    """Zones round-robin over the crews' working days (zone i on working day i), all of a
    zone's bins at 09:00, packed by weight into the trucks (shifts may hold a truck back)."""
    registry = city_def.registry
    start = _start_ms(days)
    city = City(city_def, seed, start)
    slots = trucks_by_size(registry)
    site = registry.site(registry.bins()[0].site)
    assert site is not None
    zones = registry.zones()
    working = sorted(city_def.shifts.days) if city_def.shifts else [0, 1, 2, 3, 4]
    for day in range(days):
        t = start + day * DAY_MS + FIXED_HOUR * HOUR_MS
        city.trucks_until(t)
        levels = city.readings(t)
        weekday = site.local_time(to_datetime(t)).weekday()
        for i, zone in enumerate(zones):
            if working[i % len(working)] != weekday:
                continue
            candidates = [
                Candidate(
                    d.id,
                    d.site,
                    d.latitude or 0.0,
                    d.longitude or 0.0,
                    float(levels[d.id]["fill_pct"]),
                    float(levels[d.id]["weight_kg"]),
                    mandatory=True,
                )
                for d in registry.bins_in_zone(zone)
            ]
            for n, plan in enumerate(plan_zone(city.depot, candidates, slots)):
                city.dispatch(_request(f"weekly-{zone}-{t}-{n}", plan.truck_id, zone, plan, t), t)
    end = start + days * DAY_MS
    city.trucks_until(end)
    city.readings(end)
    return city.result()


def _request(
    dispatch_id: str, truck_id: str, zone: str, plan: Any, t: int, reason: str = "weekly round"
) -> DispatchRequest:
    return DispatchRequest(
        dispatch_id=dispatch_id,
        truck_id=truck_id,
        zone=zone,
        stops=[
            DispatchStop(device_id=c.device_id, latitude=c.latitude, longitude=c.longitude)
            for c in plan.stops
        ],
        est_load_kg=plan.est_load_kg,
        route_km=plan.route_km,
        reason=reason,
        created_at=ms_to_iso(t),
    )


class ServicePolicy:
    """facility-alerts as a subprocess; the simulator's city plays the bins and the trucks."""

    def __init__(
        self,
        city: CityDef,
        rules: list[dict[str, Any]],
        opportunistic: float,
        step_ms: int,
    ) -> None:
        self.city = city
        self.registry = city.registry
        self.last_city: City | None = None
        self.rules = rules
        self.opportunistic = opportunistic
        self.step_ms = step_ms
        self.requests: list[DispatchRequest] = []
        self.barrier = threading.Condition()
        self.clock_events = 0

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.barrier:
            if msg.topic.endswith("/dispatch/requests"):
                self.requests.append(DispatchRequest.model_validate_json(msg.payload))
            else:
                self.clock_events += 1
            self.barrier.notify_all()

    def run(self, days: int, seed: int) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            rules_file = Path(tmp) / "rules.yaml"
            rules_file.write_text(yaml.safe_dump({"rules": [*self.rules, CLOCK_RULE]}))
            broker = MosquittoServer(Path(tmp) / "mosquitto").start()
            port = free_ports(1)[0]
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "ALERTS_"))}
            env.update(
                MQTT_URL=broker.url,
                MQTT_CLIENT_ID=f"policy-eval-{os.getpid()}",
                ALERTS_RULES_FILE=str(rules_file),
                ALERTS_INFLUX_ENABLED="false",
                ALERTS_HTTP_PORT=str(port),
                ALERTS_OPPORTUNISTIC_PCT=str(self.opportunistic),
                DEVICES_FILE=str(self.city.write_registry(Path(tmp))),
                # A request made after hours waits for the next shift (a weekend: 63 h); it
                # must not expire and be asked for again meanwhile.
                ALERTS_DISPATCH_TIMEOUT_S=str(80 * 3600 if self.city.shifts else 8 * 3600),
                LOG_LEVEL="WARNING",
            )
            proc = subprocess.Popen([sys.executable, "-m", "services.alerts"], cwd=ROOT, env=env)
            try:
                wait_alerts_ready(port)
                return self._drive(broker.url, days, seed)
            finally:
                proc.terminate()
                proc.wait(30)
                broker.close()

    def _drive(self, url: str, days: int, seed: int) -> dict[str, Any]:
        # Nagle off: each step's last publish would otherwise wait ~40 ms for an ACK.
        client = nodelay_client(url, f"policy-eval-driver-{os.getpid()}", max_inflight=1000)
        client.on_message = self._on_message
        client.loop_start()
        client.subscribe([(f"{P}/dispatch/requests", 1), (f"{P}/alerts/policy_clock/#", 1)])
        time.sleep(0.5)  # SUBACK; a missed first barrier would only cost its deadline
        start = _start_ms(days)
        city = City(self.city, seed, start)
        self.last_city = city
        topics = {d.id: f"{P}/{d.site}/ewaste_bin/{d.id}/telemetry" for d in self.registry.bins()}
        seen = 0
        for step in range(days * DAY_MS // self.step_ms):
            t = start + step * self.step_ms
            for status in city.trucks_until(t):
                client.publish(
                    f"{P}/dispatch/{status.dispatch_id}/status",
                    status.model_dump_json(),
                    qos=1,
                    retain=True,
                )
            for did, fields in city.readings(t).items():
                client.publish(topics[did], json.dumps({"ts": t, **fields}), qos=1)
            clock = {
                "ts": t,
                "fill_pct": 0.0,
                "weight_kg": 0.0,
                "temperature_c": 60.0 if step % 2 == 0 else 20.0,
            }
            client.publish(
                f"{P}/ewaste/ewaste_bin/policy-clock/telemetry", json.dumps(clock), qos=1
            )
            with self.barrier:
                # The clock alternates firing / resolved (for: 0): one alert event a step.
                wanted = step + 1
                if not self.barrier.wait_for(lambda: self.clock_events >= wanted, timeout=30):
                    raise RuntimeError(f"facility-alerts did not answer step {step}")
                new, seen = self.requests[seen:], len(self.requests)
            for request in new:
                city.dispatch(request, t)
        end = start + days * DAY_MS
        city.trucks_until(end)
        city.readings(end)
        client.disconnect()
        client.loop_stop()
        return city.result()


def _start_ms(days: int) -> int:
    """A local (UTC+9) Monday 00:00 with the whole run before now (backfill: every ts in the
    past). Monday, so runs on any day share one weekday (and shift) alignment, and a long
    evaluation crossing midnight gives every policy and the bound the same start."""
    now = int(time.time() * 1000)
    start = (now // DAY_MS - days - 1) * DAY_MS - 9 * HOUR_MS
    weeks = 7 * DAY_MS
    # 1970-01-05 00:00 KST was a Monday.
    monday0 = 4 * DAY_MS - 9 * HOUR_MS
    return monday0 + (start - monday0) // weeks * weeks


def run_bound(
    city_def: CityDef, days: int, seed: int, time_limit_s: float, start_ms: int | None = None
) -> dict[str, Any]:
    """The hindsight bound on this seed's trace, and its schedule driven through the city."""
    shifts = city_def.shifts
    if shifts is None:
        raise ValueError(f"city {city_def.name}: the bound needs shifts")
    registry = city_def.registry
    start = _start_ms(days) if start_ms is None else start_ms
    end = start + days * DAY_MS
    blocks = [b for b in shifts.blocks_between(start, end) if b.start_ms >= start]
    depot = (registry.depot.latitude, registry.depot.longitude)
    traces = []
    for device_id, model in make_bins(city_def, seed, start).items():
        d = registry.device(device_id)
        assert d is not None and d.latitude is not None and d.longitude is not None
        w0 = model.weight_kg
        slots: list[int] = []
        cum: list[float] = []
        late: list[float] = []
        for i, block in enumerate(blocks):
            times = hindsight.collection_times(block, city_def.windows.get(device_id), shifts)
            if times is None or times[1] >= end:
                continue
            slots.append(i)
            for at, into in zip(times, (cum, late), strict=True):
                model.reading(at)
                into.append(model.weight_kg + model.overflow_kg - w0)
        model.reading(end)
        traces.append(
            hindsight.BinTrace(
                device_id,
                registry.zone_of(device_id) or "",
                model.full_kg,
                w0,
                tuple(slots),
                tuple(cum),
                model.weight_kg + model.overflow_kg - w0,
                hindsight.depot_km(depot, (d.latitude, d.longitude)),
                tuple(late),
            )
        )
    block_ms = max(b.end_ms - b.start_ms for b in blocks)
    specs = hindsight.truck_specs(
        [(t.id, t.capacity_kg, t.speed_kmh, t.stop_service_s) for t in registry.trucks],
        shifts,
        block_ms,
        min(t.depot_km for t in traces),
    )
    # The bound on the relaxation; the schedule driven below from the safe model (legs
    # planned on late collection times), whose trip count is the best known schedule.
    lower = hindsight.solve(traces, specs, len(blocks), time_limit_s / 2)
    # The schedule to drive keeps limits every real trip keeps (not the relaxation's).
    safe_specs = hindsight.safe_truck_specs(
        [(t.id, t.capacity_kg, t.speed_kmh, t.stop_service_s) for t in registry.trucks],
        shifts,
        block_ms,
        max(t.depot_km for t in traces),
    )
    res = hindsight.solve(traces, safe_specs, len(blocks), time_limit_s / 2, safe=True)
    if not res.schedule:
        res = lower  # no safe schedule in time: drive the relaxed one (its overflow shows)
    city = City(city_def, seed, start)
    for blk in sorted(res.schedule):
        loads = {d: res.loads[(blk, d)] for d in res.schedule[blk]}
        t = blocks[blk].start_ms
        for n, (truck_id, members) in enumerate(hindsight.pack_block(loads, safe_specs)):
            cands = []
            for device_id in members:
                d = registry.device(device_id)
                assert d is not None and d.latitude is not None and d.longitude is not None
                cands.append(
                    Candidate(
                        device_id, d.site, d.latitude, d.longitude, None, loads[device_id], True
                    )
                )
            stops, km = _route_with_windows(depot, cands, city_def)
            plan = _BoundPlan(stops, round(sum(loads[m] for m in members), 1), round(km, 2))
            city.trucks_until(t)
            city.dispatch(_request(f"bound-{blk}-{n}", truck_id, "", plan, t, "bound"), t)
    city.trucks_until(end)
    city.readings(end)
    out = city.result()
    out.update(
        trips_lb=lower.trips_lb,
        trips_relaxed=lower.trips_best,
        optimal=lower.optimal,
        trips_safe=res.trips_best,
        simple_lb=lower.simple_lb,
        must_kg=lower.must_kg,
        unavoidable=len(lower.unavoidable),
        solve_s=round(lower.solve_s + res.solve_s, 1),
    )
    return out


def _route_with_windows(
    depot: tuple[float, float], cands: list[Candidate], city_def: CityDef
) -> tuple[tuple[Candidate, ...], float]:
    """Our route, with bins whose window is a morning one first and the others last (the
    truck then picks a start that meets them)."""
    windows = city_def.windows
    early = [c for c in cands if c.device_id in windows and windows[c.device_id].open_min < 720]
    late = [c for c in cands if c.device_id in windows and c not in early]
    free, _ = route(depot, [c for c in cands if c.device_id not in windows])
    ordered = (*early, *free, *late)
    points = [(c.latitude, c.longitude) for c in ordered]
    return ordered, tour_km(depot, points)


class _BoundPlan:
    def __init__(self, stops: tuple[Candidate, ...], est_load_kg: float, route_km: float) -> None:
        self.stops = stops
        self.est_load_kg = est_load_kg
        self.route_km = route_km


def route_comparison(
    city_def: CityDef, requests: list[DispatchRequest], time_limit_s: float
) -> dict[str, Any]:
    """Our km against OR-Tools' on the very same dispatches (same stops, same depot)."""
    registry = city_def.registry
    depot = (registry.depot.latitude, registry.depot.longitude)
    ours = ortools = 0.0
    slowest = 0.0
    for request in requests:
        points = [(s.latitude, s.longitude) for s in request.stops]
        c = compare(depot, points, time_limit_s)
        ours += c.ours_km
        ortools += c.ortools_km
        slowest = max(slowest, c.ours_s)
    return {
        "dispatches": len(requests),
        "ours_km": round(ours, 1),
        "ortools_km": round(ortools, 1),
        "ratio": round(ours / ortools, 3) if ortools else 1.0,
        "ours_slowest_ms": round(slowest * 1000, 1),
    }


COLS = ("trips", "route_km", "kg_per_trip", "overflow_hours", "unfit_runs", "window_missed")
NAMES = ("trips", "route km", "kg / trip", "overflow h", "off-shift runs", "windows missed")


def median_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if all(isinstance(v, bool) for v in values):
            out[key] = all(values)
        elif all(isinstance(v, int | float) for v in values):
            out[key] = round(statistics.median(values), 2)
    return out


def city_table(
    city: str, seeds: list[int], runs: dict[str, list[dict[str, Any]]], header: str
) -> str:
    """Markdown: medians over the seeds, the bound's columns and the two target ratios."""
    med = {name: median_of(rows) for name, rows in runs.items()}
    lines = [header, "", "| policy | " + " | ".join(NAMES) + " |", "|---|" + "---|" * len(NAMES)]
    for name, r in med.items():
        if name.startswith("routes"):
            continue
        lines.append(f"| {name} | " + " | ".join(str(r.get(c, "")) for c in COLS) + " |")
    lines.append("")
    b = med.get("hindsight bound (replayed)")
    ours_name = next((n for n in med if n.startswith("ours")), None)
    if b is not None:
        lines.append(
            f"Hindsight bound: proven >= {b['trips_lb']} trips (the relaxation's best "
            f"{b['trips_relaxed']}, optimal on every seed: {b['optimal']}); simple bounds (kg "
            f"that must be taken / largest truck, the busiest bin's emptyings) >= "
            f"{b['simple_lb']} ({b['must_kg']} kg; bins no schedule keeps below full: "
            f"{b['unavoidable']}); solver "
            f"{b['solve_s']} s."
        )
    if b is not None and ours_name is not None:
        pairs = list(zip(runs[ours_name], runs["hindsight bound (replayed)"], strict=True))
        vs_lb = [o["trips"] / max(1, bb["trips_lb"]) for o, bb in pairs]
        vs_best = [o["trips"] / max(1, bb["trips"]) for o, bb in pairs]
        lines.append(
            f"Ours / bound (trips, median over seeds; target <= 1.15): "
            f"{statistics.median(vs_best):.2f} against the best schedule known (per seed "
            f"{', '.join(f'{r:.2f}' for r in vs_best)}), {statistics.median(vs_lb):.2f} "
            f"against the proven lower bound."
        )
    if "routes" in runs:
        ratio = [r["ratio"] for r in runs["routes"]]
        rr = med["routes"]
        lines.append(
            f"Route km, ours / OR-Tools on our {rr['dispatches']} dispatches (median): "
            f"{statistics.median(ratio):.3f} ({rr['ours_km']} vs {rr['ortools_km']} km; "
            f"target <= 1.05); our planner's slowest dispatch {rr['ours_slowest_ms']} ms."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="policy-eval", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--city", default="today", help=f"one of {', '.join(city_names())}")
    parser.add_argument("--seeds", default="42", help="comma-separated, e.g. 1,2,3")
    parser.add_argument(
        "--step-min",
        type=int,
        default=10,
        help="minutes between bin readings (the registry's bins report every 5; 5 doubles "
        "the runtime; it moved ours at 70 %% riders by 2 trips)",
    )
    parser.add_argument(
        "--opportunistic",
        type=float,
        default=None,
        help="ALERTS_OPPORTUNISTIC_PCT for 'ours' (default: the service's default)",
    )
    parser.add_argument("--only-ours", action="store_true", help="skip the two baselines")
    parser.add_argument("--skip-bound", action="store_true", help="no hindsight bound")
    parser.add_argument("--bound-only", action="store_true", help="only the hindsight bound")
    parser.add_argument(
        "--forecast-within",
        default=None,
        help="override bin_predicted_full's horizon for ours (e.g. 60h: past a weekend)",
    )
    parser.add_argument("--bound-limit-s", type=float, default=60.0, help="CP-SAT time limit")
    parser.add_argument(
        "--route-limit-s", type=float, default=1.0, help="OR-Tools time limit per dispatch"
    )
    args = parser.parse_args(argv)
    try:
        city = load_city(args.city)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    shipped = yaml.safe_load((ROOT / "config" / "rules.yaml").read_text())["rules"]
    by_name = {r["name"]: r for r in shipped}
    step_ms = args.step_min * 60_000
    opportunistic = args.opportunistic
    if opportunistic is None:
        opportunistic = AlertsSettings.model_fields["alerts_opportunistic_pct"].default
    forecast = dict(by_name["bin_predicted_full"])
    if args.forecast_within:
        within = str(args.forecast_within)
        clear = f"{int(within[:-1]) + 6}h" if within.endswith("h") else within
        forecast.update(within=within, clear_within=clear)
    ours_name = f"ours (riders >= {opportunistic:g} %, forecast {forecast['within']})"
    runs: dict[str, list[dict[str, Any]]] = {}
    began = time.monotonic()
    for seed in seeds:
        if args.bound_only:
            runs.setdefault("hindsight bound (replayed)", []).append(
                run_bound(city, args.days, seed, args.bound_limit_s)
            )
            print(f"seed {seed}: " + json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
            continue
        if not args.only_ours:
            runs.setdefault("fixed weekly", []).append(run_fixed(city, args.days, seed))
            runs.setdefault("fill threshold", []).append(
                ServicePolicy(city, [by_name["bin_full"]], 100.0, step_ms).run(args.days, seed)
            )
        ours = ServicePolicy(city, [by_name["bin_full"], forecast], opportunistic, step_ms)
        runs.setdefault(ours_name, []).append(ours.run(args.days, seed))
        assert ours.last_city is not None
        runs.setdefault("routes", []).append(
            route_comparison(city, ours.last_city.requests, args.route_limit_s)
        )
        if not args.skip_bound:
            runs.setdefault("hindsight bound (replayed)", []).append(
                run_bound(city, args.days, seed, args.bound_limit_s)
            )
        print(f"seed {seed}: " + json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
    header = (
        f"City `{city.name}`: {args.days} simulated days, {len(city.registry.bins())} bins, "
        f"{len(city.registry.trucks)} trucks, seeds {', '.join(map(str, seeds))} (medians), "
        f"readings every {args.step_min} min ({time.monotonic() - began:.0f} s)"
    )
    print()
    print(city_table(city.name, seeds, runs, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
