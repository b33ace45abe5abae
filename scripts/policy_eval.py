"""Measure the collection policy, not just the code: 30 simulated days of the city's e-waste
bins under three policies, and a table of truck trips, route km, kg per trip, overflow hours.

- ``fixed``: every zone collected once a week (its own weekday, 09:00), all its bins.
- ``threshold``: facility-alerts with only ``bin_full`` (>= 90 %) asking for trucks.
- ``ours``: facility-alerts with ``bin_full`` + ``bin_predicted_full`` (forecast) and zone
  batching of bins above 70 %.

The two service policies run the real ``facility-alerts`` as a subprocess against a local
Mosquitto, fed at backfill speed in event time (readings stamped over the last 30 days); the
bins and trucks are a small model in this script (it imports no program). Each simulated step
ends with a "clock" reading that makes the service publish an alert, a barrier that says every
dispatch request of that step has arrived. ``python -m scripts.policy_eval [--days 30]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from common.devices import Device, Registry, haversine_km, load_registry
from common.messages import DispatchRequest, DispatchStatus, ms_to_iso
from scripts.servers import MosquittoServer, free_ports

ROOT = Path(__file__).resolve().parents[1]
P = "facility"
STEP_MS = 30 * 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
STOP_SERVICE_MS = 4 * 60_000
# Days for an average bin of each type to fill (from empty) — e-waste fills slowly, and
# apartment complexes fill their bigger bins fastest.
DAYS_TO_FULL = {"apartment": 9.0, "row_house": 12.0, "detached": 16.0}
CLOCK_RULE = {
    "name": "policy_clock",
    "type": "threshold",
    "select": {"device": "policy-clock"},
    "field": "temperature_c",
    "when": ">= 50",
    "clear": "< 50",
}


@dataclass(slots=True)
class Bin:
    device: Device
    kg_per_day: float
    weight_kg: float
    overflow_ms: int = 0

    @property
    def capacity(self) -> float:
        return float(self.device.capacity_kg or 100.0)

    @property
    def fill_pct(self) -> float:
        return min(100.0, self.weight_kg / self.capacity * 100)


@dataclass(slots=True)
class Tally:
    trips: int = 0
    route_km: float = 0.0
    collected_kg: float = 0.0


@dataclass(slots=True)
class City:
    """The bin model: deposits in the daytime, more at weekends, per-bin habits."""

    registry: Registry
    seed: int
    bins: dict[str, Bin] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        for d in self.registry.bins():
            days = DAYS_TO_FULL[d.residential_type or "apartment"]
            habit = math.exp(rng.gauss(0, 0.3))  # some buildings recycle much more
            per_day = float(d.capacity_kg or 100.0) / days * habit
            self.bins[d.id] = Bin(d, per_day, float(d.capacity_kg or 100.0) * rng.uniform(0, 0.5))
        self.rng = random.Random(self.seed + 1)

    def advance(self, t_ms: int) -> None:
        """Deposits over the step ending at ``t_ms`` (local = UTC+9)."""
        local_hour = (t_ms // HOUR_MS + 9) % 24
        weekday = ((t_ms + 9 * HOUR_MS) // DAY_MS + 3) % 7  # 0 = Monday
        if not 8 <= local_hour < 21:
            return
        weekend = 1.3 if weekday >= 5 else 1.0
        for b in self.bins.values():
            mean = b.kg_per_day * weekend * STEP_MS / (13 * HOUR_MS)
            b.weight_kg += max(0.0, self.rng.gauss(mean, mean * 0.5))
            if b.weight_kg >= b.capacity:
                b.weight_kg = b.capacity
                b.overflow_ms += STEP_MS

    def empty(self, device_id: str) -> float:
        b = self.bins[device_id]
        taken, b.weight_kg = b.weight_kg, 0.0
        return taken


def route_km(depot: tuple[float, float], stops: list[Device]) -> float:
    """Nearest-neighbour tour from the depot (the fixed schedule's route)."""
    left, here, km = list(stops), depot, 0.0
    while left:
        nxt = min(left, key=lambda d: haversine_km(*here, d.latitude or 0, d.longitude or 0))
        km += haversine_km(*here, nxt.latitude or 0, nxt.longitude or 0)
        here = (nxt.latitude or 0, nxt.longitude or 0)
        left.remove(nxt)
    return km + haversine_km(*here, *depot)


def run_fixed(registry: Registry, days: int, seed: int) -> dict[str, Any]:
    city, tally = City(registry, seed), Tally()
    start = _start_ms(days)
    depot = (registry.depot.latitude, registry.depot.longitude)
    capacity = max(t.capacity_kg for t in registry.trucks)
    for step in range(days * DAY_MS // STEP_MS):
        t = start + step * STEP_MS
        city.advance(t)
        local = t + 9 * HOUR_MS
        if local % DAY_MS != 9 * HOUR_MS:
            continue
        weekday = (local // DAY_MS + 3) % 7
        for i, zone in enumerate(registry.zones()):
            if weekday != i:
                continue
            load, trip = 0.0, list[Device]()
            for d in registry.bins_in_zone(zone):
                kg = city.bins[d.id].weight_kg
                if trip and load + kg > capacity:
                    tally.trips += 1
                    tally.route_km += route_km(depot, trip)
                    load, trip = 0.0, []
                trip.append(d)
                load += kg
                tally.collected_kg += city.empty(d.id)
            if trip:
                tally.trips += 1
                tally.route_km += route_km(depot, trip)
    return _result(city, tally)


class ServicePolicy:
    """facility-alerts as a subprocess; this object plays the bins and the trucks."""

    def __init__(self, registry: Registry, rules: list[dict[str, Any]], opportunistic: float):
        self.registry = registry
        self.rules = rules
        self.opportunistic = opportunistic
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
                _wait_ready(port)
                return self._drive(broker.url, days, seed)
            finally:
                proc.terminate()
                proc.wait(30)
                broker.close()

    def _drive(self, url: str, days: int, seed: int) -> dict[str, Any]:
        host, port = url.removeprefix("mqtt://").split(":")
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"policy-eval-driver-{os.getpid()}",
            protocol=mqtt.MQTTv5,
        )
        client.max_inflight_messages_set(1000)
        client.on_message = self._on_message
        client.connect(host, int(port))
        client.loop_start()
        client.subscribe([(f"{P}/dispatch/requests", 1), (f"{P}/alerts/policy_clock/#", 1)])
        time.sleep(0.5)  # SUBACK; a missed first barrier would only cost its deadline
        city, tally = City(self.registry, seed), Tally()
        depot = (self.registry.depot.latitude, self.registry.depot.longitude)
        start = _start_ms(days)
        truck_free: dict[str, int] = {}
        events: list[tuple[int, str, Any]] = []  # (time, "empty"|"done", payload)
        seen = 0
        for step in range(days * DAY_MS // STEP_MS):
            t = start + step * STEP_MS
            city.advance(t)
            for when, what, payload in sorted(e for e in events if e[0] <= t):
                if what == "empty":
                    tally.collected_kg += city.empty(payload)
                else:
                    client.publish(
                        f"{P}/dispatch/{payload.dispatch_id}/status",
                        payload.model_dump_json(),
                        qos=1,
                        retain=True,
                    )
            events = [e for e in events if e[0] > t]
            for b in city.bins.values():
                body = {
                    "ts": t,
                    "fill_pct": round(b.fill_pct, 2),
                    "weight_kg": round(b.weight_kg, 2),
                }
                client.publish(
                    f"{P}/ewaste/ewaste_bin/{b.device.id}/telemetry", json.dumps(body), qos=1
                )
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
                self.barrier.wait_for(lambda: self.clock_events >= wanted, timeout=30)
                new, seen = self.requests[seen:], len(self.requests)
            for request in new:
                tally.trips += 1
                tally.route_km += request.route_km
                truck = self.registry.truck(request.truck_id)
                speed = truck.speed_kmh if truck else 25.0
                go = max(t, truck_free.get(request.truck_id, t))
                here, when = depot, go
                for stop in request.stops:
                    when += int(
                        haversine_km(*here, stop.latitude, stop.longitude) / speed * HOUR_MS
                    )
                    events.append((when, "empty", stop.device_id))
                    when += STOP_SERVICE_MS
                    here = (stop.latitude, stop.longitude)
                when += int(haversine_km(*here, *depot) / speed * HOUR_MS)
                truck_free[request.truck_id] = when
                events.append(
                    (
                        when,
                        "done",
                        DispatchStatus(
                            dispatch_id=request.dispatch_id,
                            state="completed",
                            truck_id=request.truck_id,
                            zone=request.zone,
                            ts=ms_to_iso(when),
                        ),
                    )
                )
        client.disconnect()
        client.loop_stop()
        return _result(city, tally)


def _result(city: City, tally: Tally) -> dict[str, Any]:
    return {
        "trips": tally.trips,
        "route_km": round(tally.route_km, 1),
        "kg_per_trip": round(tally.collected_kg / tally.trips, 1) if tally.trips else 0.0,
        "overflow_hours": round(sum(b.overflow_ms for b in city.bins.values()) / HOUR_MS, 1),
    }


def _start_ms(days: int) -> int:
    # Whole days ending at or before now, so every ts is in the past (backfill).
    now = int(time.time() * 1000)
    return (now // DAY_MS - days - 1) * DAY_MS - 9 * HOUR_MS


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if json.loads(r.read()).get("state_restored"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("facility-alerts did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="policy-eval", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--opportunistic",
        type=float,
        default=70.0,
        help="ALERTS_OPPORTUNISTIC_PCT for 'ours' (bins above it ride along)",
    )
    parser.add_argument("--only-ours", action="store_true", help="skip the two baselines")
    args = parser.parse_args(argv)
    registry = load_registry(ROOT / "config" / "devices.yaml")
    shipped = yaml.safe_load((ROOT / "config" / "rules.yaml").read_text())["rules"]
    by_name = {r["name"]: r for r in shipped}
    results = {"fixed weekly": run_fixed(registry, args.days, args.seed)}
    if not args.only_ours:
        results["fill threshold"] = ServicePolicy(registry, [by_name["bin_full"]], 100.0).run(
            args.days, args.seed
        )
    results["ours"] = ServicePolicy(
        registry, [by_name["bin_full"], by_name["bin_predicted_full"]], args.opportunistic
    ).run(args.days, args.seed)
    print(f"{args.days} simulated days, {len(registry.bins())} bins, seed {args.seed}")
    print(f"{'policy':16} {'trips':>6} {'route km':>9} {'kg/trip':>8} {'overflow h':>11}")
    for name, r in results.items():
        print(
            f"{name:16} {r['trips']:>6} {r['route_km']:>9} {r['kg_per_trip']:>8} "
            f"{r['overflow_hours']:>11}"
        )
    fixed, ours = results["fixed weekly"], results["ours"]
    fewer = 1 - ours["trips"] / fixed["trips"] if fixed["trips"] else 0.0
    print(
        f"ours vs fixed: {fewer:.0%} fewer trips; overflow {ours['overflow_hours']} h "
        f"(target: >= 40 % fewer, 0 h)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
