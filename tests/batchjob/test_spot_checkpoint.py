"""Spot reclaims lose the work since the last checkpoint; a replacement resumes from it. Traces with
the interruption times fixed by hand."""

from __future__ import annotations

import pytest
import simpy

from capsim import simulate
from capsim.rng import RandomStreams
from capsim.serving.batchjob.checks import batch_serving
from capsim.serving.batchjob.job import BatchJob
from tests.batchjob.helpers import batch_scenario

SPOT = {"fraction": 1.0, "usd_per_hour": 1.2, "interruptions_per_hour": 1.0, "notice_s": 0.0}


class FixedDraws:
    """Stands in for the spot stream: notices come after the given delays, in launch order."""

    def __init__(self, *delays_s: float) -> None:
        self.delays_s = list(delays_s)

    def exponential(self, scale: float) -> float:
        return self.delays_s.pop(0) if self.delays_s else 1e12


def trace(*delays_s: float, **serving: object) -> BatchJob:
    scenario = batch_scenario(**{"dataset": {"items": 10, "partitions": 1}, "batch_size": 1, "spot": SPOT,
                                 "checkpoint": {"every_batches": 3}, **serving})  # fmt: skip
    env = simpy.Environment()
    job = BatchJob(env, batch_serving(scenario), scenario.service, RandomStreams(0))
    job._spot_rng = FixedDraws(*delays_s)  # type: ignore[assignment]
    job.start()
    env.run(until=env.any_of([job.done, env.timeout(1000)]))
    job.close(env.now)
    return job


def test_reclaim_loses_work_since_the_last_checkpoint() -> None:
    # 10 batches of 1 s, commits after batches 3, 6, 9, 10. Reclaimed at 5.5 s (notice 0): batches 4-5
    # are scored but uncommitted and batch 6 is half done: all lost. The replacement launches at 5.5 s
    # and redoes batches 4-10: 7 s, done at 12.5 s.
    job = trace(5.5)
    record = job.record
    assert record.makespan_s == pytest.approx(12.5)
    assert record.items_lost == 2
    assert record.lost_compute_s == pytest.approx(2.5)
    assert record.interruptions == 1
    assert [(w.launched_s, w.left_s) for w in record.workers] == [(0.0, 5.5), (5.5, 12.5)]
    assert record.commits == [(3.0, 3), (8.5, 3), (11.5, 3), (12.5, 1)]
    assert record.items_scored == 10 + 2


def test_the_notice_lets_the_worker_finish_what_it_can() -> None:
    # Notice at 5.5 s with 120 s to go: the worker keeps scoring, finishes the partition at 10 s and
    # leaves; the replacement started at 5.5 s finds nothing to take once the partition is done.
    job = trace(5.5, spot={**SPOT, "notice_s": 120.0})
    assert job.record.makespan_s == pytest.approx(10.0)
    assert job.record.items_lost == 0
    assert len(job.record.workers) == 2


def test_checkpointing_every_batch_loses_only_the_batch_in_progress() -> None:
    job = trace(5.5, checkpoint={"every_batches": 1})
    assert job.record.items_lost == 0
    assert job.record.lost_compute_s == pytest.approx(0.5)
    assert job.record.makespan_s == pytest.approx(5.5 + 5.0)  # batches 6-10 again from 5.5 s


def test_without_checkpoints_a_reclaim_restarts_the_partition() -> None:
    job = trace(5.5, checkpoint=None)
    assert job.record.items_lost == 5
    assert job.record.makespan_s == pytest.approx(15.5)


def test_a_worker_reclaimed_during_start_up_leaves_at_once() -> None:
    startup = {"provisioning_s": {"kind": "fixed", "value_s": 4.0}}
    job = trace(2.0, worker_startup=startup)
    # Reclaimed at 2 s while starting; the replacement starts at 2 s, serves from 6 s, done at 16 s.
    assert [(w.launched_s, w.left_s) for w in job.record.workers] == [(0.0, 2.0), (2.0, 16.0)]
    assert job.record.makespan_s == pytest.approx(16.0)


def test_spot_hours_are_billed_at_the_spot_price() -> None:
    scenario = batch_scenario(workers=4, spot={**SPOT, "fraction": 0.5, "interruptions_per_hour": 0.0})
    summary = simulate(scenario).summary
    # 4 partitions of 250 items = batches of 100, 100, 50: each worker is billed 3 s.
    assert summary["workers"]["initial_spot"] == 2
    assert summary["worker_s"]["billed"] == pytest.approx(12.0)
    assert summary["cost"]["spot_usd"] == pytest.approx(2 * 3 / 3600 * 1.2)
    assert summary["cost"]["on_demand_usd"] == pytest.approx(2 * 3 / 3600 * 3.6)


def test_frequent_interruptions_stretch_the_job_but_it_finishes() -> None:
    calm = simulate(batch_scenario(workers=4, dataset={"items": 1000, "partitions": 4}, batch_size=10,
                                   spot={**SPOT, "interruptions_per_hour": 0.0})).summary  # fmt: skip
    stormy = simulate(batch_scenario(workers=4, dataset={"items": 1000, "partitions": 4}, batch_size=10,
                                     spot={**SPOT, "interruptions_per_hour": 360.0},
                                     checkpoint={"every_batches": 2})).summary  # fmt: skip
    assert stormy["items"]["done"] == 1000
    assert stormy["workers"]["spot_interruptions"] > 0
    assert stormy["makespan_s"] > calm["makespan_s"]
