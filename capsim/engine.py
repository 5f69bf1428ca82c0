"""simulate(scenario) -> RunResult: builds the SimPy world, runs it, summarizes it. No file I/O."""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from capsim.autoscale.controller import AutoscaleController
from capsim.hardware.cost import billed_cost, gpus_for_slices, replica_energy
from capsim.hardware.sharing import replicas_per_gpu
from capsim.metrics.intervals import LevelAreas
from capsim.metrics.request_log import Columns, RequestLog, without_folded
from capsim.metrics.steps import StepSeries
from capsim.metrics.summary import combine_replications, replication_summary
from capsim.metrics.tally import RequestTally
from capsim.progress import within_replication
from capsim.rng import RandomStreams
from capsim.scenario import RealtimeServing, Scenario
from capsim.servicetime.scaled import service_on_hardware
from capsim.serving.asyncqueue.run import run_async
from capsim.serving.dataplane.support import EngineChoice, choose_engine
from capsim.serving.fleet import RealtimeFleet
from capsim.serving.streaming.run import run_streaming
from capsim.stability import stability_warnings

if TYPE_CHECKING:
    import pandas as pd

ProgressCallback = Callable[[float], None]
"""Called with the fraction (0..1) of simulated time done, a few hundred times per run."""

# How long after the last arrival the run goes on so that requests in flight can finish; what is
# still unfinished then is reported as in flight.
_MIN_DRAIN_S = 60.0
_TARGET_SAMPLES = 1000
_PROGRESS_STEPS = 200


@dataclass
class ReplicationResult:
    """What one replication produced: its summary, per-request columns (unless bounded-memory mode)
    and time series of the time-weighted quantities."""

    replication: int
    summary: dict[str, Any]
    requests: Columns | None
    timeseries: dict[str, np.ndarray]
    replica_changes: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Every change of the replica counts ("desired", "starting", "ready", "billed") as (time_s, value)."""


@dataclass
class RunResult:
    """The result of `simulate`: the combined summary and each replication's data."""

    scenario: Scenario
    summary: dict[str, Any]
    replications: list[ReplicationResult] = field(default_factory=list)

    def requests_frame(self) -> pd.DataFrame:
        """Every request of every replication as one table (empty in bounded-memory mode)."""
        import pandas as pd  # deferred: the CLI's start-up time matters more than this call's

        frames = []
        for rep in self.replications:
            if rep.requests is None:
                continue
            frame = pd.DataFrame(rep.requests)
            frame.insert(0, "replication", rep.replication)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def timeseries_frame(self) -> pd.DataFrame:
        """Per-interval averages of queue length, busy executors, utilization and replicas."""
        import pandas as pd

        frames = []
        for rep in self.replications:
            frame = pd.DataFrame(rep.timeseries)
            frame.insert(0, "replication", rep.replication)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)


def sample_interval_s(duration_s: float) -> float:
    """A round interval giving about a thousand samples over the run."""
    raw = duration_s / _TARGET_SAMPLES
    magnitude = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if step * magnitude >= raw:
            return float(step * magnitude)
    return float(10 * magnitude)


def _sample_times(scenario: Scenario) -> np.ndarray:
    interval = sample_interval_s(scenario.duration_s)
    grid = np.arange(interval, scenario.duration_s, interval)
    ticks = np.unique(np.concatenate([grid, [scenario.warmup_s, scenario.duration_s]]))
    return ticks[ticks > 0]


def _progress_clock(
    env: simpy.Environment, duration_s: float, progress: ProgressCallback
) -> Generator[simpy.Event, Any, None]:
    """Reports the fraction of simulated time done, a couple of hundred times per run."""
    step_s = duration_s / _PROGRESS_STEPS
    for k in range(1, _PROGRESS_STEPS + 1):
        yield env.timeout(k * step_s - env.now)
        progress(min(env.now / duration_s, 1.0))


def _run_replication(
    scenario: Scenario,
    seed: int,
    replication: int,
    keep_requests: bool,
    progress: ProgressCallback | None,
    engine: str = "simpy",
) -> ReplicationResult:
    if scenario.serving.mode in ("streaming", "async", "llm"):
        return _run_pull_replication(scenario, seed, replication, keep_requests, progress)
    if scenario.serving.mode == "graph":
        from capsim.serving.graph.run import run_graph  # deferred: it imports numba

        return run_graph(scenario, seed, replication, _sample_times(scenario), keep_requests)
    serving = scenario.serving
    assert isinstance(serving, RealtimeServing) and scenario.workload is not None  # simulate() dispatches modes
    streams = RandomStreams(seed, replication)
    slo_s = scenario.slo.latency_ms / 1000.0 if scenario.slo else None
    overhead_s = serving.overhead_ms / 1000.0
    ticks = _sample_times(scenario)
    tally = RequestTally(scenario.warmup_s, slo_s, exact=keep_requests)
    levels = LevelAreas(ticks, overhead_s)

    def fold(cols: Columns) -> None:
        cols = without_folded(cols)  # (bounded-memory mode: the loop folded completed requests itself)
        if cols["outcome"].size == 0:
            return  # every row folded by the loop (nearly every flush of a day): an empty block adds only zeros
        levels.add(cols)
        tally.add(cols, overhead_s)

    log = RequestLog(flush=None if keep_requests else fold)
    env = simpy.Environment()
    from capsim.serving.dataplane.fleet import CompiledFleet  # deferred: they import numba
    from capsim.serving.dataplane.fold import allocate, into
    from capsim.serving.sizes import size_sampler

    drain_limit_s = scenario.duration_s + max(scenario.duration_s, _MIN_DRAIN_S)
    # Latencies end by the drain limit (plus the overhead): the loop's histograms span that.
    loop_fold = allocate(ticks, scenario.warmup_s, slo_s, serving.batching.max_batch_size,
                         drain_limit_s + overhead_s, on=not keep_requests)  # fmt: skip
    service = service_on_hardware(scenario.service, scenario.hardware)  # a MIG slice's batches take longer
    sizes = size_sampler(scenario, streams)  # workload.size: its own stream, arrivals unchanged
    fleet: RealtimeFleet = CompiledFleet(env, serving, service, streams, log, loop_fold, sizes,
                                         sharing=scenario.hardware.sharing)  # fmt: skip
    arrivals = scenario.workload.arrival.chunks(streams.stream("arrivals"), scenario.duration_s)
    fleet.start(arrivals)
    if progress is not None:
        env.process(_progress_clock(env, scenario.duration_s, progress))
    if serving.autoscaling is not None:
        AutoscaleController(env, fleet, serving.autoscaling, serving.schedule, serving.clock_start_h)
    env.run(until=scenario.duration_s)
    env.run(until=env.any_of([fleet.drained, env.timeout(drain_limit_s - env.now)]))
    fleet.expire_buffer(env.now)
    for replica in fleet.all_replicas:
        replica.expire(env.now)
        replica.book_in_service()
    if keep_requests:
        fold(log.view())
    else:
        log.flush_all()
        into(loop_fold, tally, levels)
    requests = log.detach() if keep_requests else None
    return realtime_result(scenario, seed, replication, engine, tally, levels, fleet, ticks, requests)


def realtime_result(
    scenario: Scenario,
    seed: int,
    replication: int,
    engine: str,
    tally: RequestTally,
    levels: LevelAreas,
    fleet: RealtimeFleet,
    ticks: np.ndarray,
    requests: Columns | None,
) -> ReplicationResult:
    """One real-time fleet's replication result once its run is over and its requests are folded
    into `tally` and `levels`: the summary (cost, energy, replicas, SLO), the time series and the
    replica changes. A graph's stages (capsim/serving/graph) are summarized by it too."""
    window_s = scenario.duration_s - scenario.warmup_s
    warm = int(np.searchsorted(ticks, scenario.warmup_s))
    fl = fleet.levels
    step_areas = {
        "replicas": fl.ready.area_at(ticks),
        "replicas_starting": fl.starting.area_at(ticks),
        "replicas_desired": fl.desired.area_at(ticks),
        "billed_replicas": fl.billed.area_at(ticks),
        "billed_spot_replicas": fl.billed_spot.area_at(ticks),
        "serving_executors": fl.serving_executors.area_at(ticks),
    }
    per_gpu = replicas_per_gpu(scenario.hardware)  # MIG slices or time-slicing / MPS
    if per_gpu is not None:
        step_areas["billed_gpus"] = _billed_gpus(fl.billed, per_gpu).area_at(ticks)

    def window_mean(area: np.ndarray) -> float:
        return float((area[-1] - (area[warm] if scenario.warmup_s > 0 else 0.0)) / window_s)

    level_means = {name: window_mean(area) for name, area in levels.areas.items()}
    level_means.update({name: window_mean(area) for name, area in step_areas.items()})
    level_means["utilization"] = (
        level_means["busy_executors"] / level_means["serving_executors"] if level_means["serving_executors"] else 0.0
    )
    low, high = fl.ready.extremes_between(scenario.warmup_s, scenario.duration_s)
    replicas = {"mean": level_means["replicas"], "min": int(low), "max": int(high),
                "billed_mean": level_means["billed_replicas"], "cold_starts": fleet.cold_starts,
                "spot_interruptions": fleet.spot_interruptions}  # fmt: skip
    if "billed_gpus" in level_means:
        replicas["billed_gpus_mean"] = level_means["billed_gpus"]
    summary = replication_summary(
        name=scenario.name,
        seed=seed,
        duration_s=scenario.duration_s,
        window_s=window_s,
        tally=tally,
        levels=level_means,
        replicas=replicas,
        cost_usd=_cost(scenario, level_means, window_s),
        energy=_energy(scenario, level_means, window_s),
        slo=(scenario.slo.latency_ms, scenario.slo.percentile) if scenario.slo else None,
        extra={
            "service": service_on_hardware(scenario.service, scenario.hardware).describe(),
            "warnings": stability_warnings(scenario),
            "engine": engine,
        },
    )
    widths = np.diff(np.concatenate([[0.0], ticks]))
    timeseries = {"time_s": ticks}
    for name, area in levels.areas.items():
        timeseries[name] = np.diff(np.concatenate([[0.0], area])) / widths
    for name, area in step_areas.items():
        timeseries[name] = np.diff(np.concatenate([[0.0], area])) / widths
    timeseries["arrival_rps"] = levels.arrived / widths
    with np.errstate(invalid="ignore", divide="ignore"):
        timeseries["latency_mean_ms"] = np.where(
            levels.completed > 0, levels.latency_sum_s / np.maximum(levels.completed, 1) * 1000.0, np.nan
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        timeseries["utilization"] = np.where(
            timeseries["serving_executors"] > 0, timeseries["busy_executors"] / timeseries["serving_executors"], 0.0
        )
    changes = {
        name: list(zip(series.times_s, series.values, strict=True))
        for name, series in (("desired", fl.desired), ("starting", fl.starting), ("ready", fl.ready),
                             ("billed", fl.billed))
    }  # fmt: skip
    return ReplicationResult(replication, summary, requests, timeseries, changes)


def _run_pull_replication(
    scenario: Scenario, seed: int, replication: int, keep_requests: bool, progress: ProgressCallback | None
) -> ReplicationResult:
    """A streaming, async or LLM replication: its own model, the same result shape."""
    duration_s = scenario.duration_s

    def on_env(env: simpy.Environment) -> None:
        if progress is not None:
            env.process(_progress_clock(env, duration_s, progress))

    if scenario.serving.mode == "llm":
        from capsim.serving.llm.run import run_llm  # deferred: it imports numba

        run = run_llm
    else:
        run = run_streaming if scenario.serving.mode == "streaming" else run_async
    out = run(scenario, seed, replication, _sample_times(scenario), keep_requests, on_env)
    return ReplicationResult(replication, out.summary, out.requests, out.timeseries, out.replica_changes)


def _billed_gpus(billed_replicas: StepSeries, slices_per_gpu: int) -> StepSeries:
    """Physical GPUs billed over time for replicas on MIG slices (`gpus_for_slices` at every change)."""
    gpus = StepSeries(gpus_for_slices(int(billed_replicas.values[0]), slices_per_gpu), billed_replicas.times_s[0])
    for t_s, replicas in zip(billed_replicas.times_s[1:], billed_replicas.values[1:], strict=True):
        gpus.set(t_s, gpus_for_slices(int(replicas), slices_per_gpu))
    return gpus


def _cost(scenario: Scenario, level_means: dict[str, float], window_s: float) -> dict[str, float]:
    """Billed replica-seconds in the window at on-demand and spot prices (`billed_cost`); on a
    shared GPU (MIG, time-slicing, MPS), billed GPU-seconds at the GPU's price (`hardware.usd_per_hour`
    is then per GPU)."""
    if "billed_gpus" in level_means:
        return billed_cost(scenario.hardware.usd_per_hour, level_means["billed_gpus"] * window_s)
    spot = getattr(scenario.serving, "spot", None)  # only real-time replicas run on spot here
    spot_replica_s = level_means["billed_spot_replicas"] * window_s
    on_demand_replica_s = level_means["billed_replicas"] * window_s - spot_replica_s
    spot_usd_per_hour = spot.price_usd_per_hour if spot is not None else 0.0
    return billed_cost(scenario.hardware.usd_per_hour, on_demand_replica_s, spot_replica_s, spot_usd_per_hour)


def _energy(scenario: Scenario, level_means: dict[str, float], window_s: float) -> dict[str, float] | None:
    """Energy of the billed replicas (`replica_energy`); a replica is busy in proportion to its busy
    executors. On a shared GPU the billed GPUs draw idle power; a busy MIG slice adds its compute
    share of the GPU's busy power above idle, and under time-slicing or MPS a GPU counts as busy
    while any of its replicas is (bounded here by the busy replicas and the billed GPUs: an upper
    bound, as TDP is)."""
    assert isinstance(scenario.serving, RealtimeServing)
    busy_replicas = level_means["busy_executors"] / scenario.serving.instances_per_replica
    mig = scenario.hardware.mig
    if "billed_gpus" in level_means and mig is not None and mig.compute_share is not None:
        busy_gpus = busy_replicas * mig.compute_share
        return replica_energy(scenario.hardware, level_means["billed_gpus"] * window_s, busy_gpus * window_s, window_s)
    if "billed_gpus" in level_means:
        busy_gpus = min(busy_replicas, level_means["billed_gpus"])
        return replica_energy(scenario.hardware, level_means["billed_gpus"] * window_s, busy_gpus * window_s, window_s)
    billed_replica_s = level_means["billed_replicas"] * window_s
    return replica_energy(scenario.hardware, billed_replica_s, busy_replicas * window_s, window_s)


def simulate(
    scenario: Scenario,
    seed: int | None = None,
    replications: int = 1,
    *,
    keep_requests: bool = True,
    progress: ProgressCallback | None = None,
    engine: EngineChoice = "auto",
    first_replication: int = 0,
) -> RunResult:
    """Run `replications` independent replications of `scenario` and summarize them.

    `seed` overrides the scenario's seed. Replication r draws from streams keyed by (seed, r), so
    two scenarios run with the same seed share their random numbers stream by stream. With
    `keep_requests=False` only mergeable histograms are kept (bounded memory, <= 0.5% error on
    percentiles). `progress` receives the fraction of simulated time done (summed over replications).
    `engine` is accepted and ignored (kept one release): a real-time run's data plane is the
    compiled event loop (capsim/serving/dataplane), under SimPy's control plane. The summary's
    `engine` says which ran ("compiled"; the other modes: "simpy"). `first_replication` numbers the
    replications from there (streams keyed by (seed, first_replication + i)), so a caller can add
    replications to a run it already has (capsim.plan) and combine the summaries
    (`capsim.metrics.summary.combine_replications`) into what one longer run would give; batch jobs
    always start at 0.
    """
    if replications < 1:
        raise ValueError("replications must be >= 1")
    seed = scenario.seed if seed is None else seed
    if scenario.serving.mode == "batch":
        # A batch job has no arrivals and no request log: it has its own model (capsim/serving/batchjob).
        from capsim.serving.batchjob.run import run_batch_job

        job = run_batch_job(scenario, seed, replications, progress=progress)
        reps = [ReplicationResult(r, summary, None, series) for r, (summary, series) in enumerate(job.replications)]
        return RunResult(scenario=scenario, summary=job.summary, replications=reps)
    chosen = choose_engine(scenario, engine) if scenario.serving.mode == "realtime" else "simpy"
    results = []
    # A run allocates millions of short-lived, acyclic objects (events, batch lists) while holding
    # many long-lived ones: CPython's cyclic collector would rescan the long-lived ones over and
    # over (a 1M-request run spends a third of its time there). Reference counting frees everything
    # the model creates, so the collector is paused for the run and restored afterwards.
    collector_was_on = gc.isenabled()
    gc.disable()
    try:
        for i in range(replications):
            rep_progress = None if progress is None else within_replication(progress, i, replications)
            results.append(_run_replication(scenario, seed, first_replication + i, keep_requests, rep_progress, chosen))
    finally:
        if collector_was_on:
            gc.enable()
    summary = combine_replications([r.summary for r in results])
    return RunResult(scenario=scenario, summary=summary, replications=results)
