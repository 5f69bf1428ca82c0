"""One replication of an async-queue scenario: submissions, the queue and its workers (a compiled data
plane under a SimPy control plane: workers.py, kernel.py), KEDA on the queue, the depth sampler, and
the summary (latency = submit → result seen by the polling client)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from capsim.metrics.request_log import RequestLog
from capsim.metrics.tally import ExactValues, HistogramValues, ValueDistribution
from capsim.rng import RandomStreams
from capsim.serving.asyncqueue.spec import AsyncServing
from capsim.serving.asyncqueue.workers import AsyncQueue
from capsim.serving.pull_run import (
    ItemFold,
    ModeRun,
    keda_controller,
    pull_summary,
    run_and_drain,
    sampled_backlog,
)

if TYPE_CHECKING:
    from capsim.scenario.schema import Scenario

QUEUE_SAMPLE_S = 1.0  # the queue depth is read once a second: for the autoscaler and the depth percentiles


def _depth_sampler(
    env: simpy.Environment, queue: AsyncQueue, samples: list[tuple[float, int]]
) -> Generator[simpy.Event, Any, None]:
    while True:
        samples.append((env.now, queue.waiting(env.now)))
        yield env.timeout(QUEUE_SAMPLE_S)


def run_async(
    scenario: Scenario,
    seed: int,
    replication: int,
    ticks: np.ndarray,
    keep_requests: bool,
    on_env: Callable[[simpy.Environment], None] | None = None,
) -> ModeRun:
    """Simulate one replication; `ticks` are the sample times of the time series."""
    serving = scenario.serving
    assert isinstance(serving, AsyncServing) and scenario.workload is not None
    streams = RandomStreams(seed, replication)
    fold = ItemFold(scenario, ticks, exact=keep_requests)
    log = RequestLog()
    env = simpy.Environment()
    make: Callable[[], ValueDistribution] = ExactValues if keep_requests else HistogramValues
    result_ms, poll_delay_ms = make(), make()

    # Worker i draws from the same stream as real-time replica i (common random numbers across modes).
    def make_rng(index: int) -> np.random.Generator:
        return streams.stream(f"service/replica-{index}")

    queue = AsyncQueue(env, scenario, make_rng, streams.stream("coldstart"), log, fold, keep_requests)
    env.process(queue.feed(scenario.workload.arrival.chunks(streams.stream("arrivals"), scenario.duration_s)))
    depth_samples: list[tuple[float, int]] = []
    env.process(_depth_sampler(env, queue, depth_samples))
    if serving.autoscaling is not None:
        policy = serving.autoscaling
        nan = float("nan")

        def read(now: float) -> tuple[float, float, float]:
            # KEDA's concurrency metric integrates jobs without a stored result; read only when asked.
            concurrency = queue.in_flight_area(now) if policy.metric == "concurrency" else nan
            return concurrency, float(queue.waiting(now)), float(queue.appended)

        env.process(keda_controller(env, queue, policy, read, lambda: len(queue.workers), QUEUE_SAMPLE_S))
    if on_env is not None:
        on_env(env)
    run_and_drain(env, scenario, queue.drained)
    queue.close(result_ms, poll_delay_ms, scenario.warmup_s)

    measured = fold.tally.completed
    depth_block = sampled_backlog(depth_samples, scenario, QUEUE_SAMPLE_S)  # the mean: filled in below
    summary, timeseries, changes = pull_summary(
        scenario, seed, fold, queue.levels,
        members={"cold_starts": queue.starter.cold_starts},
        extra={"queue_depth": depth_block,
               "result_ms": result_ms.summary(),
               "poll_delay_ms": poll_delay_ms.summary(),
               "polls_per_job": queue.polls / measured if measured else None},
        extra_areas={},
        warnings=async_warnings(scenario),
    )  # fmt: skip
    summary["queue_depth"]["mean"] = summary["levels"]["queue_length_mean"]
    requests = {k: v.copy() for k, v in log.view().items()} if keep_requests else None
    return ModeRun(summary, requests, timeseries, changes)


def async_warnings(scenario: Scenario) -> list[str]:
    """A warning when the offered rate reaches the workers' best-case capacity (on average or at peak)."""
    serving = scenario.serving
    assert isinstance(serving, AsyncServing) and scenario.workload is not None
    arrival = scenario.workload.arrival
    capacity = serving.capacity_rps(scenario.service)
    offered = arrival.mean_rate_rps(scenario.duration_s)
    peak = arrival.peak_rate_rps(scenario.duration_s)
    if offered >= capacity:
        return [
            f"unstable: offered {offered:.4g} jobs/s >= capacity {capacity:.4g} jobs/s of {serving.max_workers()} "
            "workers with full batches; the queue grows for as long as the run lasts"
        ]
    if peak > capacity:
        return [f"peak rate {peak:.4g} jobs/s exceeds capacity {capacity:.4g} jobs/s: the queue builds up at peak"]
    return []
