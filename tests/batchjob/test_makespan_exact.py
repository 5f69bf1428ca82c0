"""Makespan is exact for deterministic service: every case below is computed by hand."""

from __future__ import annotations

import pytest

from capsim import simulate
from capsim.serving.batchjob.checks import makespan_floor_s
from tests.batchjob.helpers import batch_scenario


def makespan(**serving: object) -> float:
    summary = simulate(batch_scenario(**serving)).summary
    assert summary["items"]["done"] == summary["items"]["total"]
    return summary["makespan_s"]


def test_equal_partitions_one_per_worker() -> None:
    # 1000 items, 2 workers: partitions of 500 = 5 batches of 1 s each.
    assert makespan(workers=2) == pytest.approx(5.0, abs=1e-12)


def test_more_partitions_than_workers_queue_in_order() -> None:
    # 4 partitions of 250 = batches 100, 100, 50 (3 s whatever the size); 2 workers take two each.
    assert makespan(workers=2, dataset={"items": 1000, "partitions": 4}) == pytest.approx(6.0, abs=1e-12)


def test_uneven_partition_sizes_are_taken_in_list_order() -> None:
    # Worker A takes [0] (3 batches, until 3 s); B takes [1] (1 s), [2] (until 2 s), [3] (until 3 s).
    assert makespan(workers=2, dataset={"partition_sizes": [300, 100, 100, 100]}) == pytest.approx(3.0, abs=1e-12)
    # The other order: A takes [0] (1 s) then [2] (2 s), B takes [1] (1 s) then [3] (3 s, until 4 s).
    assert makespan(workers=2, dataset={"partition_sizes": [100, 100, 100, 300]}) == pytest.approx(4.0, abs=1e-12)


def test_last_batch_of_a_partition_is_smaller_and_costs_less() -> None:
    # linear: 100 ms + 1 ms per item; 1050 items in one partition = 10 batches of 0.2 s + one of 50 (0.15 s).
    linear = {"kind": "linear", "base_ms": 100.0, "per_item_ms": 1.0}
    summary = simulate(batch_scenario(service=linear, dataset={"items": 1050, "partitions": 1})).summary
    assert summary["makespan_s"] == pytest.approx(10 * 0.2 + 0.15, abs=1e-12)
    assert summary["batch_service_ms"]["max"] == pytest.approx(200.0)


def test_job_and_worker_start_up_add_up() -> None:
    startup = {"provisioning_s": {"kind": "fixed", "value_s": 60}, "image_pull_s": {"kind": "fixed", "value_s": 30},
               "model_load_s": {"kind": "fixed", "value_s": 10}}  # fmt: skip
    summary = simulate(batch_scenario(workers=2, job_startup_s=20, worker_startup=startup)).summary
    assert summary["makespan_s"] == pytest.approx(20 + 100 + 5, abs=1e-9)
    # Billed from launch (after the job's start-up) to the end: 2 workers × 105 s; computing 10 s.
    assert summary["worker_s"]["billed"] == pytest.approx(210.0)
    assert summary["worker_s"]["startup"] == pytest.approx(200.0)
    assert summary["utilization"] == pytest.approx(10 / 210)
    assert summary["cost"]["usd"] == pytest.approx(210 / 3600 * 3.6)


def test_checkpoint_writes_take_worker_time() -> None:
    # One partition of 10 batches, a checkpoint after every 3rd and at the end: 4 writes of 0.5 s.
    summary = simulate(batch_scenario(dataset={"items": 1000, "partitions": 1},
                                      checkpoint={"every_batches": 3, "write_s": 0.5})).summary  # fmt: skip
    assert summary["makespan_s"] == pytest.approx(10 + 4 * 0.5, abs=1e-12)
    assert summary["worker_s"]["checkpoint"] == pytest.approx(2.0)


def test_items_complete_when_committed() -> None:
    # Commits at 3, 6, 9 and 10 s (300, 300, 300, 100 items): the median item is done at 6 s.
    summary = simulate(
        batch_scenario(dataset={"items": 1000, "partitions": 1}, checkpoint={"every_batches": 3})
    ).summary
    assert summary["latency_ms"]["p50"] == pytest.approx(6000.0)
    assert summary["latency_ms"]["max"] == pytest.approx(10_000.0)
    assert summary["latency_ms"]["mean"] == pytest.approx((300 * 3 + 300 * 6 + 300 * 9 + 100 * 10) / 1000 * 1000)


def test_idle_workers_leave_and_stop_billing() -> None:
    # 3 workers, 2 partitions: the third finds nothing and is released at once.
    summary = simulate(batch_scenario(workers=3, dataset={"items": 1000, "partitions": 2})).summary
    assert summary["makespan_s"] == pytest.approx(5.0)
    assert summary["worker_s"]["billed"] == pytest.approx(10.0)


def test_deadline_verdict_and_attainment() -> None:
    met = simulate(batch_scenario(workers=2, deadline_s=5.0)).summary
    assert met["deadline_met"] is True and met["slo"]["attainment"] == 1.0
    missed = simulate(batch_scenario(workers=2, deadline_s=4.5, dataset={"items": 1000, "partitions": 1},
                                     checkpoint={"every_batches": 2})).summary  # fmt: skip
    assert missed["makespan_s"] == pytest.approx(10.0)
    assert missed["deadline_met"] is False
    assert missed["slo"]["attainment"] == pytest.approx(0.4)  # 400 items committed by 4 s


def test_unfinished_job_at_the_horizon() -> None:
    summary = simulate(batch_scenario("duration_s=3.5", workers=1)).summary
    assert summary["makespan_s"] is None
    assert summary["items"]["done"] == 0 and summary["items"]["remaining"] == 1000  # nothing committed yet
    assert summary["simulated_s"] == 3.5
    assert summary["worker_s"]["compute"] == pytest.approx(3.5)  # the batch in progress counts up to the end
    assert any("did not finish" in w for w in summary["warnings"])


@pytest.mark.parametrize("workers", [1, 2, 5, 10])
@pytest.mark.parametrize("prefetch", [True, False])
@pytest.mark.parametrize("read_mb_per_s", [None, 0.05, 0.5])  # batch reads of 2 s (I/O-bound) or 0.2 s
def test_the_makespan_floor_is_exact_when_partitions_divide_evenly(
    workers: int, prefetch: bool, read_mb_per_s: float | None
) -> None:
    # 1000 items of 1 kB in 10 partitions, batches of 30 (the last of each partition 10 items), a
    # checkpoint after every 2nd batch taking 0.3 s: the floor follows the worker's rules exactly.
    reads = {"read_mb_per_s": read_mb_per_s} if read_mb_per_s is not None else {}
    scenario = batch_scenario(workers=workers, job_startup_s=7, batch_size=30, prefetch=prefetch,
                              dataset={"items": 1000, "partitions": 10, "item_bytes": 1000.0},
                              checkpoint={"every_batches": 2, "write_s": 0.3},
                              service={"kind": "linear", "base_ms": 100.0, "per_item_ms": 10.0}, **reads)  # fmt: skip
    expected = makespan_floor_s(scenario)
    assert simulate(scenario).summary["makespan_s"] == pytest.approx(expected, abs=1e-9)
