"""A well-kept solver's route for one dispatch: OR-Tools' vehicle routing (one vehicle, depot to
depot, guided local search within a time limit), to score our nearest-neighbour + 2-opt.

Distances are the same great-circle km our planner uses (metres, integer, for the solver).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from common.devices import haversine_km
from services.alerts.dispatch.planner import Point, nearest_neighbour, tour_km, two_opt


@dataclass(frozen=True, slots=True)
class RouteComparison:
    stops: int
    ours_km: float
    ortools_km: float
    ours_s: float
    ortools_s: float


def ortools_order(
    depot: Point, points: Sequence[Point], time_limit_s: float = 1.0
) -> list[int] | None:
    """Visiting order of ``points`` (indices), or None if the solver found nothing in time."""
    if len(points) <= 1:
        return list(range(len(points)))
    nodes = [depot, *points]
    matrix = [[round(haversine_km(*a, *b) * 1000) for b in nodes] for a in nodes]
    manager = pywrapcp.RoutingIndexManager(len(nodes), 1, 0)
    routing = pywrapcp.RoutingModel(manager)

    def distance(i: int, j: int) -> int:
        km: int = matrix[manager.IndexToNode(i)][manager.IndexToNode(j)]
        return km

    transit = routing.RegisterTransitCallback(distance)
    routing.SetArcCostEvaluatorOfAllVehicles(transit)
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    )
    params.time_limit.FromMilliseconds(max(1, round(time_limit_s * 1000)))
    solution = routing.SolveWithParameters(params)
    if solution is None:
        return None
    order: list[int] = []
    index = solution.Value(routing.NextVar(routing.Start(0)))
    while not routing.IsEnd(index):
        order.append(manager.IndexToNode(index) - 1)
        index = solution.Value(routing.NextVar(index))
    return order


def compare(depot: Point, points: Sequence[Point], time_limit_s: float = 1.0) -> RouteComparison:
    began = time.perf_counter()
    ours = two_opt(depot, points, nearest_neighbour(depot, points))
    ours_s = time.perf_counter() - began
    ours_km = tour_km(depot, [points[i] for i in ours])
    began = time.perf_counter()
    order = ortools_order(depot, points, time_limit_s)
    ortools_s = time.perf_counter() - began
    ortools_km = ours_km if order is None else tour_km(depot, [points[i] for i in order])
    return RouteComparison(len(points), ours_km, ortools_km, ours_s, ortools_s)
