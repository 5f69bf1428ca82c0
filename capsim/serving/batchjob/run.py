"""Running a batch job: replications of the SimPy model, each to the job's end or the horizon
(`duration_s`), summarized and combined. Called by `capsim.engine.simulate`; no file I/O."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from capsim.progress import within_replication
from capsim.rng import RandomStreams
from capsim.serving.batchjob.checks import batch_serving, check_batch_job
from capsim.serving.batchjob.job import BatchJob
from capsim.serving.batchjob.summary import combine_replications, replication_summary, timeseries

if TYPE_CHECKING:
    from capsim.scenario.schema import Scenario


@dataclass
class BatchJobRun:
    """The combined summary and, per replication, its summary and progress time series."""

    summary: dict[str, Any]
    replications: list[tuple[dict[str, Any], dict[str, np.ndarray]]]


_PROGRESS_TICKS = 1000  # over the horizon: the job often ends long before `duration_s`


def _report_items(
    env: simpy.Environment, job: BatchJob, horizon_s: float, progress: Callable[[float], None]
) -> Generator[simpy.Event, Any, None]:
    """Reports the share of the job's items done at evenly spaced simulated times (it only reads
    state, so the job's events and random draws are the same with or without it)."""
    total = max(job.record.total_items, 1)
    for k in range(1, _PROGRESS_TICKS + 1):
        yield env.timeout(k * horizon_s / _PROGRESS_TICKS - env.now)
        progress(job.record.items_done / total)


def run_replication(
    scenario: Scenario, seed: int, replication: int, progress: Callable[[float], None] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One replication: the job simulated until it is done or `duration_s` has passed; `progress`
    receives the share of the job's items done as it goes."""
    serving = batch_serving(scenario)
    env = simpy.Environment()
    job = BatchJob(env, serving, scenario.service, RandomStreams(seed, replication))
    job.start()
    if progress is not None:
        env.process(_report_items(env, job, scenario.duration_s, progress))
    env.run(until=env.any_of([job.done, env.timeout(scenario.duration_s)]))
    end_s = float(env.now)
    job.close(end_s)
    return replication_summary(scenario, seed, job, end_s), timeseries(job, end_s)


def run_batch_job(
    scenario: Scenario, seed: int, replications: int = 1, *, progress: Callable[[float], None] | None = None
) -> BatchJobRun:
    """`replications` independent runs of the job (streams keyed by (seed, replication)); `progress`
    receives the share of all replications' items done."""
    check_batch_job(scenario)  # also checked at load time; here for scenarios built in code
    runs = []
    for r in range(replications):
        within = None if progress is None else within_replication(progress, r, replications)
        runs.append(run_replication(scenario, seed, r, within))
        if progress is not None:
            progress((r + 1) / replications)
    return BatchJobRun(summary=combine_replications([s for s, _ in runs]), replications=runs)
