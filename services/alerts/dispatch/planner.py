"""Pure planning: which bins ride together, on which truck, in which order (nearest neighbour
+ 2-opt from the depot). No state, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from common.devices import haversine_km

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A bin that may be collected: where it is and how heavy it is now."""

    device_id: str
    site: str
    latitude: float
    longitude: float
    fill_pct: float | None
    weight_kg: float
    mandatory: bool  # its own alert asked for the collection (vs riding along)


@dataclass(frozen=True, slots=True)
class TruckSlot:
    truck_id: str
    capacity_kg: float


@dataclass(frozen=True, slots=True)
class Plan:
    truck_id: str
    stops: tuple[Candidate, ...]  # in driving order
    est_load_kg: float
    route_km: float


def tour_km(depot: Point, stops: Sequence[Point]) -> float:
    """Depot -> stops in order -> depot."""
    path = [depot, *stops, depot]
    return sum(haversine_km(*a, *b) for a, b in pairwise(path))


def nearest_neighbour(depot: Point, stops: Sequence[Point]) -> list[int]:
    left = list(range(len(stops)))
    order: list[int] = []
    here = depot
    while left:
        best = min(left, key=lambda i: haversine_km(*here, *stops[i]))
        order.append(best)
        left.remove(best)
        here = stops[best]
    return order


def two_opt(depot: Point, stops: Sequence[Point], order: list[int]) -> list[int]:
    """Reverse segments while that shortens the closed tour (bounded passes)."""
    best = list(order)
    best_km = tour_km(depot, [stops[i] for i in best])
    for _ in range(50):
        improved = False
        for i in range(len(best) - 1):
            for j in range(i + 2, len(best) + 1):
                trial = best[:i] + best[i:j][::-1] + best[j:]
                km = tour_km(depot, [stops[k] for k in trial])
                if km < best_km - 1e-9:
                    best, best_km, improved = trial, km, True
        if not improved:
            break
    return best


def route(depot: Point, stops: Sequence[Candidate]) -> tuple[tuple[Candidate, ...], float]:
    points = [(c.latitude, c.longitude) for c in stops]
    order = two_opt(depot, points, nearest_neighbour(depot, points))
    ordered = tuple(stops[i] for i in order)
    return ordered, tour_km(depot, [points[i] for i in order])


def plan_zone(
    depot: Point, candidates: Sequence[Candidate], trucks: Sequence[TruckSlot]
) -> list[Plan]:
    """Pack mandatory bins first (they may open more trucks), then riders where room is left;
    a rider that fits nowhere waits for the next run. Heaviest first (first-fit decreasing)."""
    if not trucks or not any(c.mandatory for c in candidates):
        return []
    ordered = sorted(candidates, key=lambda c: (not c.mandatory, -c.weight_kg, c.device_id))
    groups: list[tuple[TruckSlot, list[Candidate]]] = []
    loads: list[float] = []
    for cand in ordered:
        for i, (slot, members) in enumerate(groups):
            if loads[i] + cand.weight_kg <= slot.capacity_kg:
                members.append(cand)
                loads[i] += cand.weight_kg
                break
        else:
            if cand.mandatory:
                # Trucks are used largest first and reused (a second trip) when all are out.
                slot = trucks[len(groups) % len(trucks)]
                groups.append((slot, [cand]))
                loads.append(cand.weight_kg)
    plans = []
    for (slot, members), load in zip(groups, loads, strict=True):
        stops, km = route(depot, members)
        plans.append(Plan(slot.truck_id, stops, round(load, 1), round(km, 2)))
    return plans
