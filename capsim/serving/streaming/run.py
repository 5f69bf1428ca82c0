"""One replication of a streaming scenario: the topic fed by the arrival process, the consumer group,
KEDA's lag autoscaler, and the summary (latency = event time → scored)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from capsim.metrics.request_log import RequestLog
from capsim.rng import RandomStreams
from capsim.serving.pull_run import (
    ItemFold,
    ModeRun,
    close_log,
    keda_controller,
    pull_summary,
    run_and_drain,
    sampled_backlog,
)
from capsim.serving.streaming.fold import allocate as allocate_fold
from capsim.serving.streaming.fold import into as fold_into
from capsim.serving.streaming.group import ConsumerGroup
from capsim.serving.streaming.spec import StreamingServing

if TYPE_CHECKING:
    from capsim.scenario.schema import Scenario

LAG_SAMPLE_S = 1.0  # lag is read once a second: for the autoscaler and for the lag percentiles


def _lag_sampler(
    env: simpy.Environment, group: ConsumerGroup, samples: list[tuple[float, int]]
) -> Generator[simpy.Event, Any, None]:
    while True:
        samples.append((env.now, group.lag(env.now)))
        yield env.timeout(LAG_SAMPLE_S)


def _tick_lag(
    env: simpy.Environment, group: ConsumerGroup, ticks: np.ndarray, out: np.ndarray
) -> Generator[simpy.Event, Any, None]:
    """The lag at each sample tick, read from the committed offsets (a point value)."""
    for i, tick in enumerate(ticks):
        yield env.timeout(float(tick) - env.now)
        out[i] = group.lag(env.now)


def run_streaming(
    scenario: Scenario,
    seed: int,
    replication: int,
    ticks: np.ndarray,
    keep_requests: bool,
    on_env: Callable[[simpy.Environment], None] | None = None,
) -> ModeRun:
    """Simulate one replication; `ticks` are the sample times of the time series."""
    serving = scenario.serving
    assert isinstance(serving, StreamingServing) and scenario.workload is not None
    streams = RandomStreams(seed, replication)
    fold = ItemFold(scenario, ticks, exact=keep_requests)
    log = RequestLog(flush=None if keep_requests else fold)
    env = simpy.Environment()

    # Consumer i draws from the same stream as real-time replica i: a streaming and a real-time
    # scenario run with one seed see the same service times (common random numbers).
    def make_rng(index: int) -> np.random.Generator:
        return streams.stream(f"service/replica-{index}")

    slo_s = scenario.slo.latency_ms / 1000.0 if scenario.slo else None
    horizon_s = scenario.duration_s + max(scenario.duration_s, 60.0) + 1.0  # the drain limit bounds latency
    loop_fold = allocate_fold(fold, scenario.warmup_s, slo_s, serving.max_poll_records, horizon_s, not keep_requests)
    group = ConsumerGroup(env, serving, scenario.service, make_rng, streams.stream("partitioner"),
                          streams.stream("coldstart"), log, ticks, loop_fold)  # fmt: skip
    env.process(group.feed(scenario.workload.arrival.chunks(streams.stream("arrivals"), scenario.duration_s)))
    lag_samples: list[tuple[float, int]] = []
    env.process(_lag_sampler(env, group, lag_samples))
    tick_lag = np.full(ticks.size, np.nan)
    env.process(_tick_lag(env, group, ticks, tick_lag))
    if serving.autoscaling is not None:
        scaling = serving.autoscaling
        lag_cap = serving.partitions * scaling.lag_threshold  # KEDA's Kafka scaler caps the lag it reports
        nan = float("nan")

        def read(now: float) -> tuple[float, float, float]:  # only the lag is a Kafka scaler input
            return nan, float(min(group.lag(now), lag_cap)), float(group.arrived)

        env.process(keda_controller(env, group, scaling.keda_policy(), read, lambda: len(group.members),
                                    LAG_SAMPLE_S, max_replicas=serving.partitions))  # fmt: skip
    if on_env is not None:
        on_env(env)
    run_and_drain(env, scenario, group.drained)
    end_s = env.now
    group.fold_open_batches()
    if keep_requests:
        close_log(log, fold, group.in_service_batches(), keep_requests)
    else:  # the loop folded every scored record; the rest are still in the topic
        for block in group.unscored_blocks():
            fold(block)
        fold_into(loop_fold, fold)

    lag_area = fold.waiting_area + group.levels.in_service.area_at(ticks)
    lag_block = sampled_backlog(lag_samples, scenario, LAG_SAMPLE_S)  # the mean: from the exact integral below
    lag_block["at_end"] = int(tick_lag[-1])  # read at duration_s, when arrivals stop (the last tick)
    summary, timeseries, changes = pull_summary(
        scenario, seed, fold, group.levels,
        members={"cold_starts": group.starter.cold_starts, "rebalances": group.rebalances},
        extra={"lag": lag_block,
               "partition_pause_s": group.unowned_partition_s(end_s),
               "records_scored": group.records_scored},
        extra_areas={"lag": lag_area},
        warnings=stream_warnings(scenario),
    )  # fmt: skip
    summary["lag"]["mean"] = summary["levels"]["lag_mean"]
    timeseries["lag_at_tick"] = tick_lag
    requests = {k: v.copy() for k, v in log.view().items()} if keep_requests else None
    return ModeRun(summary, requests, timeseries, changes)


def stream_warnings(scenario: Scenario) -> list[str]:
    """Warnings a planner needs before reading the figures: capacity below the offered rate, idle consumers."""
    serving = scenario.serving
    assert isinstance(serving, StreamingServing) and scenario.workload is not None
    arrival = scenario.workload.arrival
    capacity = serving.capacity_rps(scenario.service)
    offered = arrival.mean_rate_rps(scenario.duration_s)
    peak = arrival.peak_rate_rps(scenario.duration_s)
    warnings = []
    if offered >= capacity:
        warnings.append(
            f"unstable: offered {offered:.4g} events/s >= capacity {capacity:.4g} events/s of "
            f"{serving.max_parallelism()} consumers with full polls; lag grows for as long as the run lasts"
        )
    elif peak > capacity:
        warnings.append(f"peak rate {peak:.4g} events/s exceeds capacity {capacity:.4g} events/s: lag builds at peak")
    if serving.autoscaling is None and serving.consumers > serving.partitions:
        warnings.append(
            f"{serving.consumers - serving.partitions} of {serving.consumers} consumers are idle: "
            f"a group uses at most one consumer per partition ({serving.partitions})"
        )
    return warnings
