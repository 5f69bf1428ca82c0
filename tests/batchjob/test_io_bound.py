"""An I/O-bound job is limited by input read throughput, not by the accelerator (hand-computed)."""

from __future__ import annotations

import pytest

from capsim import simulate
from tests.batchjob.helpers import batch_scenario

# 1000 items of 1 MB in one partition, batches of 100: a batch reads 100 MB. At 100 MB/s a read takes
# 1 s; compute (linear, 0 + 2 ms per item) 0.2 s. With prefetch a partition of n batches takes
# r + (n - 1)·max(c, r) + c: 1 + 9 + 0.2 = 10.2 s. Without: n·(r + c) = 12 s.
IO = {"dataset": {"items": 1000, "partitions": 1, "item_bytes": 1e6}, "read_mb_per_s": 100.0}


def linear(per_item_ms: float) -> dict[str, object]:
    return {"kind": "linear", "base_ms": 0.0, "per_item_ms": per_item_ms}


def run(per_item_ms: float = 2.0, **serving: object) -> dict:
    return simulate(batch_scenario(service=linear(per_item_ms), **{**IO, **serving})).summary


def test_prefetched_reads_bound_the_makespan() -> None:
    summary = run()
    assert summary["makespan_s"] == pytest.approx(10.2, abs=1e-9)
    assert summary["worker_s"]["read_stall"] == pytest.approx(10.2 - 2.0, abs=1e-9)
    assert summary["utilization"] == pytest.approx(2.0 / 10.2)
    assert any(w.startswith("I/O-bound") for w in summary["warnings"])


def test_without_prefetch_reads_and_compute_add() -> None:
    assert run(prefetch=False)["makespan_s"] == pytest.approx(12.0, abs=1e-9)


def test_a_faster_accelerator_barely_helps_but_faster_reads_do() -> None:
    base = run()["makespan_s"]
    faster_gpu = run(per_item_ms=1.0)["makespan_s"]  # compute halved: 1 + 9 + 0.1
    faster_reads = run(read_mb_per_s=200.0)["makespan_s"]  # reads halved: 0.5 + 9·0.5 + 0.2
    assert faster_gpu == pytest.approx(10.1, abs=1e-9)
    assert faster_reads == pytest.approx(5.2, abs=1e-9)
    assert base - faster_gpu < 0.02 * base < base - faster_reads


def test_compute_bound_job_hides_its_reads() -> None:
    # At 1000 MB/s a read takes 0.1 s < 0.2 s compute: only the first read shows, 0.1 + 10 × 0.2.
    summary = run(read_mb_per_s=1000.0)
    assert summary["makespan_s"] == pytest.approx(2.1, abs=1e-9)
    assert not any(w.startswith("I/O-bound") for w in summary["warnings"])


def test_every_partition_starts_with_an_unhidden_read() -> None:
    # Two partitions of 5 batches on one worker: 2 × (1 + 4 × 1 + 0.2).
    summary = run(dataset={"items": 1000, "partitions": 2, "item_bytes": 1e6}, workers=1)
    assert summary["makespan_s"] == pytest.approx(10.4, abs=1e-9)
