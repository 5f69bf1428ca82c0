"""Running a batch job: replications of the SimPy model, each to the job's end or the horizon
(`duration_s`), summarized and combined. Called by `capsim.engine.simulate`; no file I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from capsim.rng import RandomStreams
from capsim.scenario import Scenario
from capsim.serving.batchjob.checks import batch_serving, check_batch_job
from capsim.serving.batchjob.job import BatchJob
from capsim.serving.batchjob.summary import combine_replications, replication_summary, timeseries


@dataclass
class BatchJobRun:
    """The combined summary and, per replication, its summary and progress time series."""

    summary: dict[str, Any]
    replications: list[tuple[dict[str, Any], dict[str, np.ndarray]]]


def run_replication(scenario: Scenario, seed: int, replication: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One replication: the job simulated until it is done or `duration_s` has passed."""
    serving = batch_serving(scenario)
    env = simpy.Environment()
    job = BatchJob(env, serving, scenario.service, RandomStreams(seed, replication))
    job.start()
    env.run(until=env.any_of([job.done, env.timeout(scenario.duration_s)]))
    end_s = float(env.now)
    job.close(end_s)
    return replication_summary(scenario, seed, job, end_s), timeseries(job, end_s)


def run_batch_job(
    scenario: Scenario, seed: int, replications: int = 1, *, progress: Callable[[float], None] | None = None
) -> BatchJobRun:
    """`replications` independent runs of the job (streams keyed by (seed, replication))."""
    check_batch_job(scenario, candidates=False)  # also checked at load time; here for scenarios built in code
    runs = []
    for r in range(replications):
        runs.append(run_replication(scenario, seed, r))
        if progress is not None:
            progress((r + 1) / replications)
    return BatchJobRun(summary=combine_replications([s for s, _ in runs]), replications=runs)
