"""The hindsight bound: with a run's whole drop-off trace known in advance, the fewest truck
trips that keep every bin below overflow, with the city's trucks, depot, shifts and windows.

The model (CP-SAT) works on shift blocks: a bin may be emptied once in a block it can be reached
in (its access window meets the block), at that block's collection time; emptying takes what it
holds then. Each bin's collections are a path start -> block -> ... -> end whose every leg
gathers less than the bin holds (else it overflowed first). Per block, truck v makes ``n[v]``
trips (at most as many as fit the block's hours at the shortest possible trip), and the bins
emptied in a block must fit those trips' capacities and stop counts in total. Letting loads
split across a block's trips makes this a relaxation, so its optimum (and the solver's proven
bound when time runs out) is a valid lower bound on trips. The solver's blocks are then packed
into whole trips (one small CP-SAT per block), routed, and driven by the simulator's trucks
(shifts, windows, timing): that replay is the bound's realised schedule, its km and its
overflow hours.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ortools.sat.python import cp_model

from common.devices import haversine_km
from devices.simulator.shifts import Block, Shifts, Window

# The most an emptying leaves behind (the bin model's dust and stray cable).
RESIDUE_KG = 0.4
# Street between two stops a safe schedule allows for (bins of a zone lie within ~1 km).
LEG_KM = 1.0
# Trucks reach a block's first bins about this long after leaving the depot.
REACH_MS = 30 * 60_000


@dataclass(frozen=True, slots=True)
class BinTrace:
    """One bin's drop-off trace: ``cum_kg[i]`` is what it received from the run's start up to
    its collection time in block ``slots[i]``; ``end_kg`` up to the run's end."""

    device_id: str
    zone: str
    full_kg: float
    initial_kg: float
    slots: tuple[int, ...]  # indices of the blocks the bin can be emptied in
    cum_kg: tuple[float, ...]
    end_kg: float
    depot_km: float
    # Up to the block's last moment the bin can be reached in: a schedule that must hold in
    # the real trucks' timing plans on this (a collection may come that late).
    late_kg: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class TruckSpec:
    truck_id: str
    capacity_kg: float
    max_stops: int  # per trip
    max_trips: int  # per block


@dataclass(slots=True)
class BoundResult:
    trips_lb: int  # proven: no schedule makes fewer
    trips_best: int  # the solver's best relaxed schedule (== lb when optimal)
    optimal: bool
    simple_lb: int  # max(kg that must be taken / largest truck, the busiest bin's emptyings)
    must_kg: float
    unavoidable: list[str]  # bins no schedule keeps below full (served as well as they can be)
    solve_s: float
    # block index -> bins emptied there
    schedule: dict[int, list[str]] = field(default_factory=dict)
    loads: dict[tuple[int, str], float] = field(default_factory=dict)


def collection_times(block: Block, window: Window | None, shifts: Shifts) -> tuple[int, int] | None:
    """The first and last moment a truck leaving at the block's start can empty the bin
    (inside the block and the bin's window), or None if it cannot then."""
    first, last = block.start_ms + REACH_MS, block.end_ms - 60_000
    if window is not None:
        local = datetime.fromtimestamp(block.start_ms / 1000, UTC).astimezone(shifts.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        first = max(first, int((midnight + timedelta(minutes=window.open_min)).timestamp() * 1000))
        closes = midnight + timedelta(minutes=window.close_min)
        last = min(last, int(closes.timestamp() * 1000) - 60_000)
    return (first, last) if first < last else None


def truck_specs(
    trucks: Sequence[tuple[str, float, float, int]],
    shifts: Shifts,
    block_ms: int,
    nearest_km: float,
) -> list[TruckSpec]:
    """(id, capacity kg, speed km/h, service s) -> limits no real trip can beat: the shortest
    trip drives to the nearest bin and back and serves one stop."""
    out = []
    for truck_id, capacity, speed, service_s in trucks:
        drive_s = 2 * nearest_km / speed * 3600
        longest = min(shifts.max_trip_s, block_ms / 1000)
        stops = max(1, math.floor((longest - drive_s) / max(service_s, 1)))
        trips = max(1, math.floor(block_ms / 1000 / (drive_s + service_s)))
        out.append(TruckSpec(truck_id, capacity, stops, trips))
    return out


def safe_truck_specs(
    trucks: Sequence[tuple[str, float, float, int]],
    shifts: Shifts,
    block_ms: int,
    farthest_km: float,
) -> list[TruckSpec]:
    """Limits every real trip keeps: to the farthest bin and back, and per stop its service
    plus a kilometre of street (``LEG_KM``); as many such trips as fit a block."""
    out = []
    for truck_id, capacity, speed, service_s in trucks:
        drive_s = 2 * farthest_km / speed * 3600
        per_stop = service_s + LEG_KM / speed * 3600
        longest = min(shifts.max_trip_s, block_ms / 1000)
        stops = max(1, math.floor((longest - drive_s) / per_stop))
        trips = max(1, math.floor(block_ms / 1000 / (drive_s + stops * per_stop)))
        out.append(TruckSpec(truck_id, capacity, stops, trips))
    return out


def _gathered(b: BinTrace, p: int, s: int, safe: bool) -> float:
    """kg the bin receives on the leg from node p to node s (-1 start, len(slots) end); with
    ``safe`` the leg ends at the latest moment of its last block."""
    k = len(b.slots)
    since = -b.initial_kg if p < 0 else b.cum_kg[p]
    if s == k:
        return b.end_kg - since
    arrive = b.late_kg if safe and b.late_kg else b.cum_kg
    return arrive[s] - since


def _arcs(b: BinTrace, safe: bool = False, forced: bool = False) -> list[tuple[int, int, int]]:
    """(from, to, kg) over nodes -1 (start), 0..k-1 (the bin's slots), k (end): the legs on
    which the bin stays below full. ``forced`` (a bin no schedule keeps below full) also
    allows each leg to the very next chance, so it is emptied as often as it must be."""
    k = len(b.slots)
    arcs = []
    for p in range(-1, k):
        for s in range(p + 1, k + 1):
            gathered = _gathered(b, p, s, safe)
            if gathered >= b.full_kg:
                if forced and s == p + 1:
                    arcs.append((p, s, math.floor(b.full_kg) if s < k else 0))
                break
            arcs.append((p, s, max(0, math.floor(gathered)) if s < k else 0))
    return arcs


def greedy(
    bins: Sequence[BinTrace], trucks: Sequence[TruckSpec], n_blocks: int, safe: bool = False
) -> tuple[dict[str, list[int]], dict[int, int]]:
    """A clairvoyant but myopic schedule, the solver's starting point: in each block, empty
    the bins that could not wait for their next chance, on as few trips as their kg need
    (largest trucks first), and fill those trips' room with the fullest other bins.
    Returns each bin's collection nodes (positions in its ``slots``) and trips per block."""
    last = {b.device_id: -1 for b in bins}
    nodes: dict[str, list[int]] = {b.device_id: [] for b in bins}
    trips: dict[int, int] = {}
    fleet = sorted(trucks, key=lambda t: -t.capacity_kg)
    for blk in range(n_blocks):
        due, others = [], []
        for b in bins:
            if blk not in b.slots:
                continue
            i = b.slots.index(blk)
            kg = _gathered(b, last[b.device_id], i, safe)
            if _gathered(b, last[b.device_id], i + 1, safe) >= b.full_kg:
                due.append((kg, b, i))
            else:
                others.append((kg / b.full_kg, kg, b, i))
        if not due:
            continue
        need = sum(kg for kg, _, _ in due)
        room, stops, count = 0.0, 0, 0
        while room < need or stops < len(due):
            t = fleet[count % len(fleet)]
            room += t.capacity_kg
            stops += t.max_stops
            count += 1
        room -= need
        stops -= len(due)
        chosen = [(b, i) for _, b, i in due]
        for _, kg, b, i in sorted(others, key=lambda o: -o[0]):
            if kg <= room and stops > 0:
                chosen.append((b, i))
                room -= kg
                stops -= 1
        for b, i in chosen:
            nodes[b.device_id].append(i)
            last[b.device_id] = i
        trips[blk] = count
    return nodes, trips


def must_kg(b: BinTrace) -> float:
    """kg that must be carried away from the bin over the whole run."""
    return _must_by(b, max(b.slots, default=0))


def solve(
    bins: Sequence[BinTrace],
    trucks: Sequence[TruckSpec],
    n_blocks: int,
    time_limit_s: float = 30.0,
    workers: int = 2,
    safe: bool = False,
) -> BoundResult:
    """``safe=False``: the relaxation (its bound is the hindsight bound). ``safe=True``: legs
    planned on late collection times, so the schedule survives the real trucks' timing."""
    model = cp_model.CpModel()
    unavoidable: list[str] = []
    x: dict[tuple[str, int], cp_model.IntVar] = {}
    load: dict[tuple[str, int], cp_model.LinearExprT] = {}
    block_bins: dict[int, list[str]] = {}
    arc_vars: dict[str, list[tuple[int, int, int, cp_model.IntVar]]] = {}
    for b in bins:
        arcs = _arcs(b, safe)
        k = len(b.slots)
        if not _has_path(arcs, k) and safe:
            arcs = _arcs(b, False)  # as safe as it can be: on the relaxation's timing
        if not _has_path(arcs, k):
            # Overflows on some leg whatever is done: counted, and emptied at every chance
            # it cannot let pass (best effort, so the schedule still serves it).
            unavoidable.append(b.device_id)
            arcs = _arcs(b, False, forced=True)
        z = [(p, s, kg, model.new_bool_var(f"z_{b.device_id}_{p}_{s}")) for p, s, kg in arcs]
        arc_vars[b.device_id] = z
        model.add(sum(v for p, _, _, v in z if p == -1) == 1)
        model.add(sum(v for _, s, _, v in z if s == k) == 1)
        for i, block in enumerate(b.slots):
            xi = model.new_bool_var(f"x_{b.device_id}_{block}")
            model.add(sum(v for _, s, _, v in z if s == i) == xi)
            model.add(sum(v for p, _, _, v in z if p == i) == xi)
            x[(b.device_id, block)] = xi
            load[(b.device_id, block)] = sum(kg * v for _, s, kg, v in z if s == i)
            block_bins.setdefault(block, []).append(b.device_id)
    n = {
        (t.truck_id, blk): model.new_int_var(0, t.max_trips, f"n_{t.truck_id}_{blk}")
        for t in trucks
        for blk in range(n_blocks)
    }
    for blk, ids in block_bins.items():
        model.add(
            sum(load[(d, blk)] for d in ids)
            <= sum(math.floor(t.capacity_kg) * n[(t.truck_id, blk)] for t in trucks)
        )
        model.add(
            sum(x[(d, blk)] for d in ids) <= sum(t.max_stops * n[(t.truck_id, blk)] for t in trucks)
        )
    # Cuts the relaxation implies but the solver would take long to find: by the end of block
    # k every bin has lost enough that it holds less than full until its next chance.
    kept = [b for b in bins if b.device_id not in unavoidable]
    for k in range(n_blocks):
        need_k = sum(_must_by(b, k) for b in kept)
        if need_k > 0:
            model.add(
                sum(
                    math.floor(t.capacity_kg) * n[(t.truck_id, blk)]
                    for t in trucks
                    for blk in range(k + 1)
                )
                >= math.floor(need_k)
            )
    trips = sum(n.values())
    model.add(trips >= max((min_collections(b) for b in kept), default=0))
    model.minimize(trips)
    # The greedy schedule as the solver's first solution (it is feasible in the model).
    kept_by_id = {b.device_id: b for b in bins}
    modelled = [b for b in bins if b.device_id in arc_vars]
    hint_nodes, hint_trips = greedy(modelled, trucks, n_blocks, safe and not unavoidable)
    for device_id, z in arc_vars.items():
        path = [-1, *hint_nodes[device_id], len(kept_by_id[device_id].slots)]
        legs = set(itertools.pairwise(path))
        for p, s_, _, v in z:
            model.add_hint(v, (p, s_) in legs)
    for (device_id, blk), var in x.items():
        pos = kept_by_id[device_id].slots.index(blk)
        model.add_hint(var, pos in hint_nodes[device_id])
    fleet = sorted(trucks, key=lambda t: -t.capacity_kg)
    for blk in range(n_blocks):
        used = [fleet[i % len(fleet)].truck_id for i in range(hint_trips.get(blk, 0))]
        for t in trucks:
            model.add_hint(n[(t.truck_id, blk)], used.count(t.truck_id))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = 1
    status = solver.solve(model)
    need = sum(must_kg(b) for b in kept)
    busiest = max((min_collections(b) for b in kept), default=0)
    biggest = max(t.capacity_kg for t in trucks)
    result = BoundResult(
        trips_lb=0,
        trips_best=0,
        optimal=status == cp_model.OPTIMAL,
        simple_lb=max(busiest, math.ceil(need / biggest - 1e-9)),
        must_kg=round(need, 1),
        unavoidable=unavoidable,
        solve_s=solver.wall_time,
    )
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        result.trips_lb = max(result.simple_lb, math.ceil(solver.best_objective_bound - 1e-6))
        return result
    result.trips_best = round(solver.objective_value)
    # Both are proven: the solver's bound on the relaxation and the kg argument.
    result.trips_lb = max(result.simple_lb, math.ceil(solver.best_objective_bound - 1e-6))
    for (device_id, blk), var in x.items():
        if solver.value(var):
            result.schedule.setdefault(blk, []).append(device_id)
            result.loads[(blk, device_id)] = float(solver.value(load[(device_id, blk)]))
    return result


def _must_by(b: BinTrace, k: int) -> float:
    """kg that must have left the bin in blocks <= k. Its last collection c by then must hold
    it below full until its next chance j; an emptying takes all it holds (less a little
    residue), so at least what it received up to the earliest such c."""
    j = next((pos for pos, slot in enumerate(b.slots) if slot > k), len(b.slots))
    if _gathered(b, -1, j, False) < b.full_kg:
        return 0.0
    for i in range(j):
        if _gathered(b, i, j, False) < b.full_kg:
            return max(0.0, b.initial_kg + b.cum_kg[i] - RESIDUE_KG)
    return 0.0  # cannot be kept below full at all: counted as unavoidable


def min_collections(b: BinTrace) -> int:
    """The fewest emptyings that keep the bin below full (0 if it never fills): every trip
    empties it at most once, so no schedule has fewer trips."""
    arcs = _arcs(b)
    k = len(b.slots)
    best = {-1: 0}
    for p, s, _ in sorted(arcs):
        if p in best:
            hops = best[p] + (1 if s < k else 0)
            best[s] = min(best.get(s, hops), hops)
    return best.get(k, 0)


def _has_path(arcs: list[tuple[int, int, int]], k: int) -> bool:
    reach = {-1}
    for p, s, _ in sorted(arcs):
        if p in reach:
            reach.add(s)
    return k in reach


def pack_block(
    loads: dict[str, float], trucks: Sequence[TruckSpec], time_limit_s: float = 5.0
) -> list[tuple[str, list[str]]]:
    """The fewest whole trips for one block's bins (each bin on one trip): (truck, bins)."""
    ids = sorted(loads)
    slots = [t for t in trucks for _ in range(t.max_trips)]
    model = cp_model.CpModel()
    use = [model.new_bool_var(f"u{j}") for j in range(len(slots))]
    a = {
        (i, j): model.new_bool_var(f"a{i}_{j}") for i in range(len(ids)) for j in range(len(slots))
    }
    for i in range(len(ids)):
        model.add_exactly_one(a[(i, j)] for j in range(len(slots)))
    for j, t in enumerate(slots):
        model.add(
            sum(math.ceil(loads[ids[i]]) * a[(i, j)] for i in range(len(ids)))
            <= math.floor(t.capacity_kg) * use[j]
        )
        model.add(sum(a[(i, j)] for i in range(len(ids))) <= t.max_stops * use[j])
    model.minimize(sum(use))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = 1
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return [(trucks[0].truck_id, [d]) for d in ids]  # one trip a bin: always packable
    out = []
    for j, t in enumerate(slots):
        members = [ids[i] for i in range(len(ids)) if solver.value(a[(i, j)])]
        if members:
            out.append((t.truck_id, members))
    return out


def depot_km(depot: tuple[float, float], point: tuple[float, float]) -> float:
    return haversine_km(*depot, *point)
