"""Trace tests: tiny scenarios whose exact event sequence (batch starts, ends, outcomes) is known by
hand from the batching rules in docs/model.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from capsim import simulate
from capsim.metrics.request_log import COMPLETED, REJECTED, TIMED_OUT
from tests.scenario_helpers import make_scenario, rows, trace_arrivals

MS = 1e-3


def run(tmp_path: Path, arrivals_ms: list[float], *overrides: str) -> dict[str, np.ndarray]:
    scenario = make_scenario(
        "duration_s=1", *overrides, workload={"arrival": trace_arrivals(tmp_path, [t * MS for t in arrivals_ms])}
    )
    return rows(simulate(scenario))


def test_greedy_batching_takes_what_is_waiting_when_the_executor_frees(tmp_path: Path) -> None:
    r = run(tmp_path, [0, 1, 2, 3, 25], "serving.batching.max_batch_size=2", "serving.batching.max_wait_ms=0")
    np.testing.assert_allclose(r["start_s"] / MS, [0, 10, 10, 20, 30])
    np.testing.assert_allclose(r["end_s"] / MS, [10, 20, 20, 30, 40])
    assert r["batch_size"].tolist() == [1, 2, 2, 1, 1]
    assert (r["outcome"] == COMPLETED).all()


def test_batch_waits_for_oldest_max_wait_or_for_a_full_batch(tmp_path: Path) -> None:
    r = run(tmp_path, [0, 2, 4, 20, 21, 22, 23], "serving.batching.max_batch_size=3", "serving.batching.max_wait_ms=5")
    # 0,2,4 fill a batch at 4 ms (before the 5 ms window of request 0 ends); 20,21,22 fill at 22;
    # 23 waits for the executor, and having waited 9 ms > 5 ms goes alone as soon as it frees.
    np.testing.assert_allclose(r["start_s"] / MS, [4, 4, 4, 22, 22, 22, 32])
    np.testing.assert_allclose(r["end_s"] / MS, [14, 14, 14, 32, 32, 32, 42])
    assert r["batch_size"].tolist() == [3, 3, 3, 3, 3, 3, 1]


def test_window_expiry_sends_a_partial_batch(tmp_path: Path) -> None:
    r = run(tmp_path, [0, 1, 30], "serving.batching.max_batch_size=8", "serving.batching.max_wait_ms=5")
    np.testing.assert_allclose(r["start_s"] / MS, [5, 5, 35])
    assert r["batch_size"].tolist() == [2, 2, 1]


def test_only_one_batch_forms_at_a_time_across_free_executors(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [0, 1, 6, 7],
        "serving.instances_per_replica=2",
        "serving.batching.max_batch_size=4",
        "serving.batching.max_wait_ms=5",
    )
    # Request 1 does not start a second batch on the idle executor: it joins the forming one.
    # The second batch starts forming at 6 and goes at 11 on the other executor.
    np.testing.assert_allclose(r["start_s"] / MS, [5, 5, 11, 11])
    np.testing.assert_allclose(r["end_s"] / MS, [15, 15, 21, 21])


def test_queued_request_times_out_at_its_deadline(tmp_path: Path) -> None:
    r = run(tmp_path, [0, 1, 2], "serving.timeout_ms=15")
    assert r["outcome"].tolist() == [COMPLETED, COMPLETED, TIMED_OUT]
    np.testing.assert_allclose(r["end_s"] / MS, [10, 20, 17])
    assert np.isnan(r["start_s"][2])


def test_full_queue_rejects_at_arrival(tmp_path: Path) -> None:
    r = run(tmp_path, [0, 1, 2, 3], "serving.queue_capacity=1")
    assert r["outcome"].tolist() == [COMPLETED, COMPLETED, REJECTED, REJECTED]
    np.testing.assert_allclose(r["end_s"][2:] / MS, [2, 3])


def test_overhead_is_added_to_every_response(tmp_path: Path) -> None:
    r = run(tmp_path, [0, 50], "serving.overhead_ms=3")
    np.testing.assert_allclose((r["end_s"] - r["arrival_s"]) / MS, [13, 13])


def test_service_time_grows_with_batch_size_for_linear_models(tmp_path: Path) -> None:
    scenario = make_scenario(
        "duration_s=1",
        "serving.batching.max_batch_size=4",
        "serving.batching.max_wait_ms=10",
        workload={"arrival": trace_arrivals(tmp_path, [0, 0.001, 0.002, 0.003])},
        service={"kind": "linear", "base_ms": 5, "per_item_ms": 2},
    )
    r = rows(simulate(scenario))
    np.testing.assert_allclose(r["end_s"] - r["start_s"], [0.013] * 4)


@pytest.mark.parametrize("balancer", ["round_robin", "least_outstanding"])
def test_balancers_spread_simultaneous_work(tmp_path: Path, balancer: str) -> None:
    r = run(tmp_path, [0, 0.5, 1, 1.5], "serving.replicas=4", f"serving.load_balancer={balancer}")
    assert sorted(r["replica"].tolist()) == [0, 1, 2, 3]
    np.testing.assert_allclose(r["start_s"], r["arrival_s"])


def test_kernel_clock_stays_a_python_float(tmp_path: Path) -> None:
    # A numpy scalar reaching a timer would turn the SimPy clock (and every later time computation)
    # into numpy arithmetic: correct, but several times slower.
    import simpy

    seen: set[type] = set()
    original = simpy.Environment.step

    def step(env: simpy.Environment) -> None:
        original(env)
        seen.add(type(env.now))

    scenario = make_scenario(
        "duration_s=2", "serving.batching.max_batch_size=8", "serving.batching.max_wait_ms=3", "serving.timeout_ms=50"
    )
    simpy.Environment.step = step  # type: ignore[method-assign]
    try:
        simulate(scenario)
    finally:
        simpy.Environment.step = original  # type: ignore[method-assign]
    assert seen <= {int, float}  # (the clock starts at the integer 0)
