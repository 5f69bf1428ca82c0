"""Running the async queue's control plane and loop alone (no KEDA, no samplers), to read its
integrals at chosen times."""

from __future__ import annotations

import numpy as np
import simpy

from capsim.metrics.request_log import Columns, RequestLog
from capsim.rng import RandomStreams
from capsim.scenario import Scenario
from capsim.serving.asyncqueue.workers import AsyncQueue
from capsim.serving.pull_run import ItemFold


def in_flight_areas(scenario: Scenario, seed: int, times_s: tuple[float, ...]) -> tuple[list[float], Columns]:
    """`AsyncQueue.in_flight_area` read at each of `times_s` (the run stops at the last), and the rows."""
    streams = RandomStreams(seed)
    env, log = simpy.Environment(), RequestLog()
    queue = AsyncQueue(env, scenario, lambda i: streams.stream(f"s{i}"), streams.stream("c"), log,
                       ItemFold(scenario, np.array([times_s[-1]]), exact=True), keep_requests=True)  # fmt: skip
    assert scenario.workload is not None
    env.process(queue.feed(scenario.workload.arrival.chunks(streams.stream("arrivals"), times_s[-1])))
    areas = []
    for t in times_s:
        env.run(until=t)
        areas.append(queue.in_flight_area(t))
    return areas, log.view()
