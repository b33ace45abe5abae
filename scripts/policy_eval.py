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
``python -m scripts.policy_eval [--days 30] [--seed 42]``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from paho.mqtt import client as mqtt

from common.devices import Registry, load_registry
from common.messages import DispatchRequest, DispatchStatus, DispatchStop
from common.timestamps import ms_to_iso
from devices.simulator.models.base import ModelContext, to_datetime
from devices.simulator.models.ewaste_bin import EwasteBin
from devices.simulator.trucks import Fleet, TruckRun
from services.alerts.dispatch.planner import Candidate, TruckSlot, plan_zone
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


class City:
    """The simulator's bins and trucks, stepped in event time by the policy under test."""

    def __init__(self, registry: Registry, seed: int, start_ms: int) -> None:
        self.registry = registry
        self.bins: dict[str, EwasteBin] = {}
        for d in registry.bins():
            site = registry.site(d.site)
            if site is None:
                raise ValueError(f"bin {d.id}: unknown site {d.site}")
            self.bins[d.id] = EwasteBin(ModelContext(d, site, seed, start_ms))
        self.fleet = Fleet(registry, self.bins)
        self.depot = (registry.depot.latitude, registry.depot.longitude)
        self.trips = 0
        self.route_km = 0.0
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
        }


def trucks_by_size(registry: Registry) -> list[TruckSlot]:
    return [
        TruckSlot(t.id, t.capacity_kg)
        for t in sorted(registry.trucks, key=lambda t: (-t.capacity_kg, t.id))
    ]


def run_fixed(registry: Registry, days: int, seed: int, step_ms: int) -> dict[str, Any]:
    """Zone i on weekday i at 09:00: all its bins, packed by weight into the trucks."""
    start = _start_ms(days)
    city = City(registry, seed, start)
    slots = trucks_by_size(registry)
    site = registry.site(registry.bins()[0].site)
    assert site is not None
    zones = registry.zones()
    for step in range(days * DAY_MS // step_ms):
        t = start + step * step_ms
        city.trucks_until(t)
        levels = city.readings(t)
        local = site.local_time(to_datetime(t))
        if (
            (local.hour, local.minute) != (FIXED_HOUR, 0)
            or local.second
            or local.weekday() >= len(zones)
        ):
            continue
        zone = zones[local.weekday()]
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
            city.dispatch(
                DispatchRequest(
                    dispatch_id=f"weekly-{zone}-{t}-{n}",
                    truck_id=plan.truck_id,
                    zone=zone,
                    stops=[
                        DispatchStop(
                            device_id=c.device_id, latitude=c.latitude, longitude=c.longitude
                        )
                        for c in plan.stops
                    ],
                    est_load_kg=plan.est_load_kg,
                    route_km=plan.route_km,
                    reason="weekly round",
                    created_at=ms_to_iso(t),
                ),
                t,
            )
    end = start + days * DAY_MS
    city.trucks_until(end)
    city.readings(end)
    return city.result()


class ServicePolicy:
    """facility-alerts as a subprocess; the simulator's city plays the bins and the trucks."""

    def __init__(
        self,
        registry: Registry,
        rules: list[dict[str, Any]],
        opportunistic: float,
        step_ms: int,
    ) -> None:
        self.registry = registry
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
        city = City(self.registry, seed, start)
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
    # Whole local (UTC+9) days ending at or before now, so every ts is in the past (backfill).
    now = int(time.time() * 1000)
    return (now // DAY_MS - days - 1) * DAY_MS - 9 * HOUR_MS


def format_tables(results: dict[str, dict[str, Any]], header: str, verdict: str) -> tuple[str, str]:
    """The same table twice: aligned plain text, and markdown for the docs."""
    cols = ("trips", "route_km", "kg_per_trip", "overflow_hours")
    names = ("trips", "route km", "kg / trip", "overflow h")
    width = max(len(n) for n in results)
    plain = [header, f"{'policy':{width}} " + " ".join(f"{n:>11}" for n in names)]
    md = [header, "", "| policy | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, r in results.items():
        plain.append(f"{name:{width}} " + " ".join(f"{r[c]:>11}" for c in cols))
        md.append(f"| {name} | " + " | ".join(str(r[c]) for c in cols) + " |")
    plain.append(verdict)
    md += ["", verdict]
    return "\n".join(plain), "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="policy-eval", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
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
    args = parser.parse_args(argv)
    registry = load_registry(ROOT / "config" / "devices.yaml")
    shipped = yaml.safe_load((ROOT / "config" / "rules.yaml").read_text())["rules"]
    by_name = {r["name"]: r for r in shipped}
    step_ms = args.step_min * 60_000
    opportunistic = args.opportunistic
    if opportunistic is None:
        opportunistic = AlertsSettings.model_fields["alerts_opportunistic_pct"].default
    results: dict[str, dict[str, Any]] = {}
    began = time.monotonic()
    if not args.only_ours:
        results["fixed weekly"] = run_fixed(registry, args.days, args.seed, step_ms)
        results["fill threshold"] = ServicePolicy(
            registry, [by_name["bin_full"]], 100.0, step_ms
        ).run(args.days, args.seed)
    results[f"ours (riders >= {opportunistic:g} %)"] = ServicePolicy(
        registry, [by_name["bin_full"], by_name["bin_predicted_full"]], opportunistic, step_ms
    ).run(args.days, args.seed)
    header = (
        f"{args.days} simulated days, {len(registry.bins())} bins, seed {args.seed}, "
        f"readings every {args.step_min} min ({time.monotonic() - began:.0f} s)"
    )
    verdict = ""
    if "fixed weekly" in results:
        fixed, ours = results["fixed weekly"], list(results.values())[-1]
        fewer = 1 - ours["trips"] / fixed["trips"] if fixed["trips"] else 0.0
        verdict = (
            f"ours vs fixed weekly: {fewer:.0%} fewer trips; overflow {ours['overflow_hours']} h "
            f"(target: >= 40 % fewer, 0 h)"
        )
    plain, md = format_tables(results, header, verdict)
    print(plain)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
