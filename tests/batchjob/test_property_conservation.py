"""Invariants of every batch job (hypothesis over small random jobs, derandomized): no item is lost
or committed twice, the counts add up, time and money are accounted for, same seed → same result."""

from __future__ import annotations

from typing import Any

import numpy as np
import simpy
from hypothesis import given
from hypothesis import strategies as st

from capsim import simulate
from capsim.rng import RandomStreams
from capsim.scenario import Scenario
from capsim.serving.batchjob.checks import batch_serving
from capsim.serving.batchjob.job import BatchJob
from capsim.serving.batchjob.summary import replication_summary, timeseries
from tests.batchjob.helpers import batch_scenario
from tests.property.strategies import settings_for

EPS = 1e-9


@st.composite
def jobs(draw: st.DrawFn) -> Scenario:
    """A small random job: every knob drawn, spot interruptions frequent enough to happen."""
    if draw(st.booleans()):
        dataset: dict[str, Any] = {"items": draw(st.integers(1, 3000))}
        if draw(st.booleans()):
            dataset["partitions"] = draw(st.integers(1, min(12, dataset["items"])))
    else:
        dataset = {"partition_sizes": draw(st.lists(st.integers(1, 800), min_size=1, max_size=8))}
    serving: dict[str, Any] = {"dataset": dataset, "workers": draw(st.integers(1, 6)),
                               "batch_size": draw(st.integers(1, 64)), "prefetch": draw(st.booleans()),
                               "job_startup_s": draw(st.sampled_from([0.0, 2.5]))}  # fmt: skip
    if draw(st.booleans()):
        dataset["item_bytes"] = 1e5
        serving["read_mb_per_s"] = draw(st.sampled_from([5.0, 50.0, 500.0]))
    if draw(st.booleans()):
        serving["checkpoint"] = {"every_batches": draw(st.integers(1, 5)), "write_s": draw(st.sampled_from([0, 0.05]))}
    if draw(st.booleans()):
        serving["spot"] = {"fraction": draw(st.sampled_from([0.5, 1.0])), "usd_per_hour": 0.5,
                           "interruptions_per_hour": draw(st.sampled_from([0.0, 1800.0, 7200.0])),
                           "notice_s": draw(st.sampled_from([0.0, 0.3, 5.0]))}  # fmt: skip
    if draw(st.booleans()):
        serving["worker_startup"] = {"provisioning_s": {"kind": "uniform", "low_s": 0.5, "high_s": 3.0}}
    kind = draw(st.sampled_from(["deterministic", "linear", "lognormal", "exponential"]))
    service: dict[str, Any] = {"kind": kind, "mean_ms": 20.0}
    if kind == "linear":
        service = {"kind": kind, "base_ms": 5.0, "per_item_ms": 0.5, "cv": draw(st.sampled_from([0.0, 0.3]))}
    elif kind == "lognormal":
        service["cv"] = 0.8
    duration = draw(st.sampled_from(["duration_s=60", "duration_s=3"]))  # some jobs are cut by the horizon
    return batch_scenario(duration, f"seed={draw(st.integers(0, 5))}", service=service, **serving)


def run_job(scenario: Scenario) -> tuple[BatchJob, dict[str, Any], dict[str, np.ndarray]]:
    env = simpy.Environment()
    job = BatchJob(env, batch_serving(scenario), scenario.service, RandomStreams(scenario.seed))
    job.start()
    env.run(until=env.any_of([job.done, env.timeout(scenario.duration_s)]))
    job.close(env.now)
    return job, replication_summary(scenario, scenario.seed, job, env.now), timeseries(job, env.now)


@settings_for(max_examples=120)
@given(scenario=jobs())
def test_items_are_conserved_and_time_is_accounted(scenario: Scenario) -> None:
    job, summary, series = run_job(scenario)
    items, record = summary["items"], job.record
    # Every item is committed once or still to do; none is committed twice.
    assert items["done"] + items["remaining"] == items["total"] == sum(batch_serving(scenario).dataset.sizes(
        batch_serving(scenario).workers))  # fmt: skip
    assert all(0 <= p.committed <= p.size for p in job.partitions)
    assert sum(p.committed for p in job.partitions) == items["done"] == sum(n for _, n in record.commits)
    # Partitions waiting or in progress are exactly the unfinished ones, each held in one place.
    held = [p.index for p in job.queue] + [w.partition.index for w in record.workers if w.partition is not None]
    assert sorted(held) == [p.index for p in job.partitions if p.committed < p.size]
    finished = summary["makespan_s"] is not None
    assert finished == (items["done"] == items["total"]) == (items["remaining"] == 0)
    # Scored items were committed, lost to a reclaim, or (cut by the horizon) still uncommitted.
    uncommitted = sum(w.uncommitted for w in record.workers)
    assert items["scored"] == items["done"] + items["lost"] + uncommitted
    if finished:
        assert uncommitted == 0
    # Progress is monotone and ends at the items done.
    done_series = series["items_done"]
    assert np.all(np.diff(done_series) >= 0) and done_series[-1] == items["done"]
    assert np.all(series["workers_busy"] <= series["workers_billed"] + EPS)
    # Worker time: every phase inside the billed time; utilization a fraction.
    worker_s = summary["worker_s"]
    assert worker_s["idle"] >= -EPS * max(1.0, worker_s["billed"])
    if worker_s["billed"] > 0:
        assert 0.0 <= summary["utilization"] <= 1.0 + EPS
    assert worker_s["lost_compute"] <= worker_s["compute"] + EPS
    assert summary["workers"]["launched"] == summary["workers"]["initial"] + summary["workers"]["spot_interruptions"]
    cost = summary["cost"]
    assert abs(cost["usd"] - cost["on_demand_usd"] - cost["spot_usd"]) <= EPS


@settings_for(max_examples=30)
@given(scenario=jobs())
def test_same_seed_same_result(scenario: Scenario) -> None:
    first = simulate(scenario, replications=2).summary
    assert simulate(scenario, replications=2).summary == first
    assert first["items"]["total"] == simulate(scenario).summary["items"]["total"]
