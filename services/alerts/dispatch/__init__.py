"""Collection dispatch: the planner (batching, capacity, routes) and the desk (open dispatches)."""
