"""Which hour of a simulated day binds a fixed fleet: the hour with the highest offered load.

A plan judges a simulated day as one traffic level (docs/plan.md, "Traffic levels"): an autoscaled
fleet's answer is its bounds for the whole day, which its autoscaler moves within; a fixed fleet
is sized by the day's busiest hour, and the plan says which one, so that a review can check that
hour's forecast rather than the day's mean.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from capsim.scenario import Scenario
from capsim.workload.modulated import DiurnalArrival, StepsArrival
from capsim.workload.trace import TraceArrival

HOUR_S = 3600.0


def hourly_offered_rps(scenario: Scenario) -> np.ndarray | None:
    """The mean arrival rate of each simulated hour [h, h + 1) (the last one possibly partial), for
    the arrival processes whose rate changes over the run (diurnal, steps, a trace); None otherwise."""
    workload = scenario.workload
    arrival = workload.arrival if workload is not None else None
    duration_s = scenario.duration_s
    hours = max(1, math.ceil(duration_s / HOUR_S - 1e-9))
    edges = np.minimum(np.arange(hours + 1) * HOUR_S, duration_s)
    if isinstance(arrival, TraceArrival):
        offsets = arrival.offsets_s()
        counts = np.bincount(np.minimum(offsets[offsets < duration_s] // HOUR_S, hours - 1).astype(np.int64),
                             minlength=hours)  # fmt: skip
        return counts / np.diff(edges)
    if isinstance(arrival, DiurnalArrival):
        # the rate each minute, averaged per hour (the sinusoid varies over hours, not minutes)
        grid_s = np.arange(0.0, duration_s, 60.0) + 30.0
        rates = arrival.rate_rps(np.minimum(grid_s, duration_s))
        index = np.minimum(grid_s // HOUR_S, hours - 1).astype(np.int64)
        return np.bincount(index, rates, minlength=hours) / np.maximum(np.bincount(index, minlength=hours), 1)
    if isinstance(arrival, StepsArrival):
        arrivals = np.zeros(hours)
        for start_s, end_s, rate in arrival._segments(duration_s):
            for h in range(int(start_s // HOUR_S), min(hours, math.ceil(end_s / HOUR_S))):
                overlap = min(end_s, edges[h + 1]) - max(start_s, edges[h])
                arrivals[h] += rate * max(0.0, overlap)
        return arrivals / np.diff(edges)
    return None


def binding_hour(scenario: Scenario) -> dict[str, Any] | None:
    """The busiest simulated hour of a run longer than an hour whose load changes over time:
    {"hour": index from the start, "clock_h": its time of day, "offered_rps": its mean rate}; None
    for a shorter or stationary run."""
    if scenario.duration_s <= HOUR_S:
        return None
    rates = hourly_offered_rps(scenario)
    if rates is None or rates.size < 2:
        return None
    hour = int(np.argmax(rates))
    arrival = scenario.workload.arrival if scenario.workload is not None else None
    start_h = getattr(arrival, "start_time_h", None)
    if start_h is None:
        start_h = getattr(scenario.serving, "clock_start_h", 0.0)
    return {"hour": hour, "clock_h": (float(start_h or 0.0) + hour) % 24.0, "offered_rps": float(rates[hour])}
