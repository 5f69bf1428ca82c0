"""What the pull-based modes (streaming, async) share after the simulation: folding per-item rows
into statistics, and the summary and time series in the same shape as the real-time mode's.

Per-item rows use the request log's columns: `arrival_s` (event time / submit), `start_s` (handed to
a consumer or worker in a batch), `end_s` (scored, or seen by the polling client), `replica` (the
consumer or worker), `batch_size`, `outcome`. The level "waiting" is the number of items arrived and
not yet taken into a batch: its time integral is the total waiting time, summed exactly from the rows
([arrival, start) per item) without any bookkeeping during the run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import simpy

from capsim.autoscale.keda import KedaPolicy
from capsim.autoscale.view import FleetView, MetricSamples
from capsim.hardware.cost import billed_cost, replica_energy
from capsim.metrics.intervals import interval_area
from capsim.metrics.request_log import COMPLETED, Columns, RequestLog
from capsim.metrics.summary import replication_summary
from capsim.metrics.tally import RequestTally
from capsim.serving.pool import PoolLevels

if TYPE_CHECKING:
    from capsim.scenario.schema import Scenario

_MIN_DRAIN_S = 60.0  # as the real-time mode: the run goes on after the last arrival to finish work


class ScaledPool(Protocol):
    """A consumer group or a worker pool as KEDA scales it."""

    desired: int
    starter: Any  # its `pending` are the members still starting

    def scale_to(self, desired: int) -> None: ...


class BatchHolder(Protocol):
    """A consumer or worker with a batch in progress."""

    @property
    def index(self) -> int: ...
    @property
    def batch_ids(self) -> np.ndarray: ...
    @property
    def batch_start_s(self) -> float: ...


class ModeRun(NamedTuple):
    """One replication of a pull-based mode: what engine.ReplicationResult holds."""

    summary: dict[str, Any]
    requests: Columns | None
    timeseries: dict[str, np.ndarray]
    replica_changes: dict[str, list[tuple[float, float]]]


class ItemFold:
    """Folds blocks of finished (or, at the end, unfinished) rows into the tally and the waiting area."""

    def __init__(self, scenario: Scenario, ticks: np.ndarray, exact: bool) -> None:
        slo_s = scenario.slo.latency_ms / 1000.0 if scenario.slo else None
        self.ticks = ticks
        self.tally = RequestTally(scenario.warmup_s, slo_s, exact=exact)
        self.waiting_area = np.zeros(ticks.size)
        self.arrived = np.zeros(ticks.size)
        self.completed = np.zeros(ticks.size)
        self.latency_sum_s = np.zeros(ticks.size)

    def __call__(self, cols: Columns) -> None:
        self.tally.add(cols, 0.0)
        arrival, start, end = cols["arrival_s"], cols["start_s"], cols["end_s"]
        done = cols["outcome"] == COMPLETED
        bins = np.minimum(np.searchsorted(self.ticks, arrival, side="right"), self.ticks.size - 1)
        self.arrived += np.bincount(bins, minlength=self.ticks.size)
        self.completed += np.bincount(bins[done], minlength=self.ticks.size)
        self.latency_sum_s += np.bincount(bins[done], weights=(end - arrival)[done], minlength=self.ticks.size)
        taken = np.where(np.isfinite(start), start, np.inf)
        self.waiting_area += interval_area(arrival, taken, np.ones(arrival.size), self.ticks)


def _per_interval(area: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    widths = np.diff(np.concatenate([[0.0], ticks]))
    return np.diff(np.concatenate([[0.0], area])) / widths


def pull_summary(
    scenario: Scenario,
    seed: int,
    fold: ItemFold,
    levels: PoolLevels,
    *,
    members: dict[str, Any],
    extra: dict[str, Any],
    extra_areas: dict[str, np.ndarray],
    warnings: list[str],
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, list[tuple[float, float]]]]:
    """The summary, time series and member-count changes of one replication.

    `members` adds mode-specific counts to the `replicas` block (cold starts, rebalances ...);
    `extra` adds the mode's own top-level keys; `extra_areas` are further time integrals at the
    ticks (e.g. consumer lag) that become time-series columns and window means in `levels`.
    """
    ticks = fold.ticks
    window_s = scenario.duration_s - scenario.warmup_s
    warm = int(np.searchsorted(ticks, scenario.warmup_s))

    def window_mean(area: np.ndarray) -> float:
        return float((area[-1] - (area[warm] if scenario.warmup_s > 0 else 0.0)) / window_s)

    step_areas = {
        "replicas": levels.ready.area_at(ticks),
        "replicas_starting": levels.starting.area_at(ticks),
        "replicas_desired": levels.desired.area_at(ticks),
        "billed_replicas": levels.billed.area_at(ticks),
        "busy_executors": levels.busy.area_at(ticks),
        "in_service": levels.in_service.area_at(ticks),
    }
    areas = {"queue_length": fold.waiting_area, **step_areas, **extra_areas}
    means = {name: window_mean(area) for name, area in areas.items()}
    means["utilization"] = means["busy_executors"] / means["replicas"] if means["replicas"] > 0 else 0.0
    low, high = levels.ready.extremes_between(scenario.warmup_s, scenario.duration_s)
    replicas = {"mean": means["replicas"], "min": int(low), "max": int(high),
                "billed_mean": means["billed_replicas"], **members}  # fmt: skip
    summary = replication_summary(
        name=scenario.name,
        seed=seed,
        duration_s=scenario.duration_s,
        window_s=window_s,
        tally=fold.tally,
        levels=means,
        replicas=replicas,
        cost_usd=billed_cost(scenario.hardware.usd_per_hour, means["billed_replicas"] * window_s),
        # One executor per member: a member is busy while its executor is.
        energy=replica_energy(scenario.hardware, means["billed_replicas"] * window_s,
                              means["busy_executors"] * window_s, window_s),
        slo=(scenario.slo.latency_ms, scenario.slo.percentile) if scenario.slo else None,
        extra={"mode": scenario.serving.mode, "service": scenario.service.describe(), "warnings": warnings, **extra},
    )
    for name in extra_areas:
        summary["levels"][f"{name}_mean"] = means[name]
    timeseries: dict[str, np.ndarray] = {"time_s": ticks}
    for name, area in areas.items():
        timeseries[name] = _per_interval(area, ticks)
    widths = np.diff(np.concatenate([[0.0], ticks]))
    timeseries["serving_executors"] = timeseries["replicas"]
    timeseries["arrival_rps"] = fold.arrived / widths
    with np.errstate(invalid="ignore", divide="ignore"):
        timeseries["latency_mean_ms"] = np.where(
            fold.completed > 0, fold.latency_sum_s / np.maximum(fold.completed, 1) * 1000.0, np.nan
        )
        timeseries["utilization"] = np.where(
            timeseries["replicas"] > 0, timeseries["busy_executors"] / np.maximum(timeseries["replicas"], 1e-300), 0.0
        )
    changes = {
        name: list(zip(series.times_s, series.values, strict=True))
        for name, series in (("desired", levels.desired), ("starting", levels.starting), ("ready", levels.ready),
                             ("billed", levels.billed))
    }  # fmt: skip
    return summary, timeseries, changes


def drain_limit_s(scenario: Scenario) -> float:
    """When the run stops at the latest: arrivals stop at `duration_s`, work goes on for as long again
    (at least a minute), as in the real-time mode."""
    return scenario.duration_s + max(scenario.duration_s, _MIN_DRAIN_S)


def run_and_drain(env: simpy.Environment, scenario: Scenario, drained: simpy.Event) -> None:
    """Run while items arrive, then until the work is done or the drain limit (as the real-time mode)."""
    env.run(until=scenario.duration_s)
    env.run(until=env.any_of([drained, env.timeout(drain_limit_s(scenario) - env.now)]))


def close_log(log: RequestLog, fold: ItemFold, in_service: Iterable[BatchHolder], keep_requests: bool) -> None:
    """Book the batches still in progress (started, not finished) and fold every row into the statistics."""
    for holder in in_service:
        rows = holder.batch_ids - log.base
        log.start_s[rows] = holder.batch_start_s
        log.batch_size[rows] = holder.batch_ids.size
        log.replica[rows] = holder.index
    if keep_requests:
        fold(log.view())
    else:
        log.flush_all()


def sampled_backlog(samples: list[tuple[float, int]], scenario: Scenario, interval_s: float) -> dict[str, Any]:
    """p50, p99 and max of a backlog read every `interval_s` inside the measured window; the mean is
    left for the caller to fill from the exact time integral."""
    window = [value for t, value in samples if scenario.warmup_s <= t <= scenario.duration_s]
    return {
        "mean": None,
        "p50": float(np.percentile(window, 50)) if window else None,
        "p99": float(np.percentile(window, 99)) if window else None,
        "max": int(max(window)) if window else None,
        "sample_interval_s": interval_s,
    }


def keda_controller(
    env: simpy.Environment,
    pool: ScaledPool,
    policy: KedaPolicy,
    read: Callable[[float], tuple[float, float, float]],
    ready: Callable[[], int],
    interval_s: float,
    max_replicas: int | None = None,
) -> Generator[simpy.Event, Any, None]:
    """KEDA (the generic policy of capsim/autoscale/keda.py) over a pool, asked at the HPA's period.

    `read(now)` gives the metrics this mode has — (concurrency, queue, arrivals so far), NaN for one it
    lacks — recorded every `interval_s`; `max_replicas` caps every decision (a group's partitions).
    """
    state = policy.make_state()
    samples = MetricSamples()
    next_decision_s = policy.period_s
    nan = float("nan")
    while True:
        now = env.now
        concurrency, queue, arrivals = read(now)
        samples.record(now, concurrency=concurrency, busy=nan, queue=queue, arrivals=arrivals)
        if now + 1e-9 >= next_decision_s:
            next_decision_s += policy.period_s
            view = FleetView(now_s=now, current=pool.desired, ready=ready(), not_ready=len(pool.starter.pending),
                             executors_per_replica=1, samples=samples)  # fmt: skip
            desired = state.decide(view)
            if max_replicas is not None:
                desired = min(desired, max_replicas)
            if desired != pool.desired:
                pool.scale_to(desired)
        yield env.timeout(interval_s)
