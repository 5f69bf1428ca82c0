"""Async mode: user-seen latency = queue + service + store write + polling delay, on hand-computed
cases; the batch-pull rule; KEDA on the queue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from capsim.engine import simulate
from capsim.serving.asyncqueue.kernel import poll_seen
from tests.asyncqueue.queue_helpers import in_flight_areas
from tests.scenario_helpers import make_scenario, rows, trace_arrivals


def _run(tmp_path: Path, times: list[float], **serving: object) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    scenario = make_scenario(
        "duration_s=3",
        workload={"arrival": trace_arrivals(tmp_path, times)},
        service={"kind": "deterministic", "mean_ms": 200.0},
        serving={"mode": "async", "workers": 1, "store_write_ms": 50.0, "poll_interval_ms": 300.0, **serving},
    )
    result = simulate(scenario)
    return rows(result), result.summary


def test_user_seen_latency_is_queue_plus_service_plus_write_plus_polling_delay(tmp_path: Path) -> None:
    # One worker, batches of up to 2, no batch wait; 200 ms per batch, 50 ms to store results;
    # clients poll at submit + 0.3 k.
    #   job 0 at 0.00: taken at 0.00, stored 0.25; polls 0.30 → seen 0.30 (50 ms polling delay)
    #   jobs 1, 2 at 0.10, 0.15: queued; taken together at 0.25, stored 0.50;
    #       job 1 polls 0.40, 0.70 → 0.70; job 2 polls 0.45, 0.75 → 0.75
    #   job 3 at 1.00: taken at 1.00, stored 1.25, seen 1.30
    r, summary = _run(tmp_path, [0.0, 0.10, 0.15, 1.0], max_batch_size=2)
    np.testing.assert_allclose(r["start_s"], [0.0, 0.25, 0.25, 1.0])
    np.testing.assert_allclose(r["end_s"], [0.30, 0.70, 0.75, 1.30])
    np.testing.assert_array_equal(r["batch_size"], [1, 2, 2, 1])
    queue_ms = np.array([0.0, 150.0, 100.0, 0.0])
    poll_delay_ms = np.array([50.0, 200.0, 250.0, 50.0])
    latency_ms = (r["end_s"] - r["arrival_s"]) * 1000.0
    np.testing.assert_allclose(latency_ms, queue_ms + 200.0 + 50.0 + poll_delay_ms)
    assert summary["latency_ms"]["mean"] == pytest.approx(np.mean([300, 600, 600, 300]))
    assert summary["poll_delay_ms"]["mean"] == pytest.approx(poll_delay_ms.mean())
    assert summary["poll_delay_ms"]["max"] == pytest.approx(250.0)
    assert summary["result_ms"]["mean"] == pytest.approx(np.mean([250, 400, 350, 250]))
    assert summary["queue_wait_ms"]["mean"] == pytest.approx(queue_ms.mean())
    assert summary["polls_per_job"] == pytest.approx((1 + 2 + 2 + 1) / 4)


def test_a_free_worker_waits_for_a_full_batch_or_the_oldest_job_s_wait(tmp_path: Path) -> None:
    # batch_wait 100 ms, batches of 2. Job 0 at 0: one job waiting, so the worker waits; job 1 at
    # 0.05 fills the batch → taken at 0.05, stored 0.30; seen 0.30 (job 0) and 0.35 (job 1).
    # Job 2 at 1.0 waits alone until 1.1 (its wait), stored 1.35, seen 1.6.
    r, _ = _run(tmp_path, [0.0, 0.05, 1.0], max_batch_size=2, batch_wait_ms=100.0)
    np.testing.assert_allclose(r["start_s"], [0.05, 0.05, 1.1])
    np.testing.assert_allclose(r["end_s"], [0.30, 0.35, 1.6])


def test_poll_tie_sees_a_result_stored_at_the_poll() -> None:
    # A result stored exactly at submit + 2 intervals is seen by that poll, not the next one.
    np.testing.assert_allclose(poll_seen(np.array([0.1, 0.0]), 0.7, 0.3), [0.7, 0.9])
    assert poll_seen(np.array([5.0]), 5.0001, 2.0)[0] == pytest.approx(7.0)


def test_keda_scales_workers_on_queue_length_within_bounds() -> None:
    scenario = make_scenario(
        "duration_s=900",
        workload={"arrival": {"kind": "steps", "steps": [
            {"start_s": 0, "rate_rps": 5}, {"start_s": 200, "rate_rps": 80}, {"start_s": 500, "rate_rps": 5}]}},
        service={"kind": "linear", "base_ms": 50.0, "per_item_ms": 20.0},
        serving={"mode": "async", "workers": 1, "max_batch_size": 8, "poll_interval_ms": 1000.0,
                 "autoscaling": {"kind": "keda", "metric": "queue_length", "target": 20, "min_replicas": 1,
                                 "max_replicas": 5, "cooldown_period_s": 60},
                 "cold_start": {"provisioning_s": {"kind": "fixed", "value_s": 20}}},
    )  # fmt: skip
    result = simulate(scenario)
    changes = result.replications[0].replica_changes
    ready = [v for _, v in changes["ready"]]
    assert max(ready) == 5 and min(ready) == 1  # up to max_replicas during the surge, back down after
    assert result.summary["queue_depth"]["max"] > 100
    assert result.summary["requests"]["in_flight"] == 0
    series = result.replications[0].timeseries
    surge = (series["time_s"] > 250) & (series["time_s"] < 450)
    assert series["replicas"][surge].mean() > 3


def test_bounded_memory_mode_gives_the_same_counts_and_close_percentiles() -> None:
    scenario = make_scenario(
        "duration_s=300", workload={"arrival": {"kind": "poisson", "rate_rps": 100.0}},
        service={"kind": "linear", "base_ms": 20.0, "per_item_ms": 5.0, "cv": 0.3},
        serving={"mode": "async", "workers": 2, "max_batch_size": 8, "batch_wait_ms": 10, "poll_interval_ms": 250},
    )  # fmt: skip
    exact, bounded = simulate(scenario).summary, simulate(scenario, keep_requests=False).summary
    assert exact["requests"] == bounded["requests"]
    assert {**exact["queue_depth"], "mean": 0} == {**bounded["queue_depth"], "mean": 0}
    assert bounded["queue_depth"]["mean"] == pytest.approx(exact["queue_depth"]["mean"], rel=1e-9)
    for block in ("latency_ms", "poll_delay_ms", "result_ms"):
        for key in ("p50", "p99"):
            assert bounded[block][key] == pytest.approx(exact[block][key], rel=0.01)


def test_the_concurrency_metric_is_the_exact_integral_of_unfinished_jobs() -> None:
    # Polls every microsecond: a job's end_s is within 1 µs of its result being stored.
    scenario = make_scenario(
        "duration_s=30", workload={"arrival": {"kind": "poisson", "rate_rps": 40.0}},
        service={"kind": "exponential", "mean_ms": 40.0},
        serving={"mode": "async", "workers": 2, "max_batch_size": 4, "poll_interval_ms": 0.001,
                 "autoscaling": {"kind": "keda", "metric": "concurrency", "target": 5, "max_replicas": 4}},
    )  # fmt: skip
    areas, r = in_flight_areas(scenario, 3, (5.0, 12.5, 30.0))
    checks = list(zip((5.0, 12.5, 30.0), areas, strict=True))
    stored = np.where(r["outcome"] == 1, r["end_s"], np.inf)
    for t, area in checks:
        expected = np.clip(np.minimum(stored, t) - r["arrival_s"], 0.0, None).sum()
        assert area == pytest.approx(expected, abs=1e-6 * r["arrival_s"].size)
    assert checks[-1][1] > 10


@pytest.mark.parametrize(
    ("workers", "service"),
    [(1, {"kind": "exponential", "mean_ms": 15.0}),
     (3, {"kind": "deterministic", "mean_ms": 40.0, "per_item_ms": 5.0})],
)
def test_workers_pulling_one_queue_are_the_core_replica_with_the_same_batcher(
    workers: int, service: dict[str, object]
) -> None:
    # W workers on one FIFO queue with the batch rule = one real-time replica with W instances and
    # the same dynamic batcher: identical batch starts and sizes; the result is seen at the first
    # poll after the core's completion time (with no store write).
    arrival = {"arrival": {"kind": "poisson", "rate_rps": 100.0}}
    queue = make_scenario("duration_s=60", workload=arrival, service=service, serving={
        "mode": "async", "workers": workers, "max_batch_size": 4, "batch_wait_ms": 5.0, "poll_interval_ms": 100.0})
    core = make_scenario("duration_s=60", workload=arrival, service=service, serving={
        "mode": "realtime", "replicas": 1, "instances_per_replica": workers,
        "batching": {"max_batch_size": 4, "max_wait_ms": 5.0}})  # fmt: skip
    a, b = rows(simulate(queue)), rows(simulate(core))
    assert a["arrival_s"].size > 5000
    np.testing.assert_array_equal(a["start_s"], b["start_s"])
    np.testing.assert_array_equal(a["batch_size"], b["batch_size"])
    seen = [poll_seen(np.array([s]), e, 0.1)[0] for s, e in zip(a["arrival_s"], b["end_s"], strict=True)]
    np.testing.assert_allclose(a["end_s"], seen)
