"""The dynamic batcher's two limits.

- `max_batch_size: 1` is no batching at all, whatever `max_wait_ms` says: a batch of one is full the
  moment its request arrives, so it never waits for the window. With the same seed every
  per-request column must be identical to the `max_wait_ms: 0` run (common random numbers).
- `max_wait_ms -> 0` converges to greedy batching (`max_wait_ms: 0`): with common random numbers the
  paired differences of mean latency, mean queue wait and mean batch size shrink with the window,
  are clearly non-zero at 1 ms (the window matters) and indistinguishable from zero at 1 µs.
"""

from __future__ import annotations

import numpy as np
import pytest

from capsim.engine import RunResult, simulate
from tests.theory.replications import interval, per_replication, queue_scenario


def assert_same_requests(a: RunResult, b: RunResult) -> None:
    assert len(a.replications) == len(b.replications)
    for ra, rb in zip(a.replications, b.replications, strict=True):
        assert ra.requests is not None and rb.requests is not None
        assert ra.requests.keys() == rb.requests.keys()
        for name in ra.requests:
            np.testing.assert_array_equal(ra.requests[name], rb.requests[name], err_msg=name)


NO_BATCHING_CASES = {
    "one-executor": [],
    "three-executors-lognormal": ["serving.instances_per_replica=3", "service={kind: lognormal, mean_ms: 5, cv: 1.5}"],
    "timeouts-and-capacity": [
        "serving.instances_per_replica=2",
        "serving.timeout_ms=6",
        "serving.queue_capacity=3",
        "workload.arrival.rate_rps=450",
    ],
    "fleet-least-outstanding": ["serving.replicas=3", "serving.load_balancer=least_outstanding",
                                "workload.arrival.rate_rps=500"],
    "fleet-random-with-cache": ["serving.replicas=2", "serving.load_balancer=random", "serving.cache.hit_ratio=0.3",
                                "workload.arrival={kind: gamma, rate_rps: 300, cv: 3}"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(NO_BATCHING_CASES), ids=str)
@pytest.mark.parametrize("max_wait_ms", [0.001, 2.0, 50.0])
def test_max_batch_size_one_is_no_batching(case: str, max_wait_ms: float) -> None:
    def run(wait_ms: float) -> RunResult:
        scenario = queue_scenario(
            rate_rps=180.0,
            service={"kind": "exponential", "mean_ms": 5.0},
            duration_s=20.0,
            warmup_s=2.0,
            seed=11,
            max_batch_size=1,
            max_wait_ms=wait_ms,
            overrides=NO_BATCHING_CASES[case],
        )
        return simulate(scenario, replications=2)

    greedy, windowed = run(0.0), run(max_wait_ms)
    assert_same_requests(greedy, windowed)
    assert greedy.summary == windowed.summary
    assert greedy.summary["batch_size"]["max"] == 1


WINDOWS_MS = (1.0, 0.1, 0.001)
METRICS = (("latency_ms", "mean"), ("queue_wait_ms", "mean"), ("batch_size", "mean"), ("utilization",))


def test_max_wait_to_zero_converges_to_greedy_batching() -> None:
    replications = 10

    def run(max_wait_ms: float) -> RunResult:
        # Utilization ~0.7 with greedy batching, so both idle executors (where the window delays a
        # batch) and queues (where it does not) are common; deterministic batch times keep the
        # common random numbers aligned whatever batches form.
        scenario = queue_scenario(
            rate_rps=400.0,
            service={"kind": "linear", "base_ms": 4.0, "per_item_ms": 0.5},
            instances=2,
            duration_s=50.0,
            warmup_s=5.0,
            seed=3,
            max_batch_size=8,
            max_wait_ms=max_wait_ms,
        )
        return simulate(scenario, replications=replications)

    greedy = run(0.0)
    runs = {w: run(w) for w in WINDOWS_MS}
    for metric in METRICS:
        diffs = {w: interval(per_replication(runs[w], *metric) - per_replication(greedy, *metric)) for w in WINDOWS_MS}
        name = ".".join(metric)
        # At 1 ms the window clearly changes the result (a batcher ignoring max_wait would fail here)...
        assert abs(diffs[1.0].mean) > diffs[1.0].half_width, f"{name}: 1 ms window vs greedy: {diffs[1.0]}"
        # ...the paired difference shrinks with the window...
        assert abs(diffs[0.1].mean) < abs(diffs[1.0].mean), f"{name}: {diffs}"
        assert abs(diffs[0.001].mean) < abs(diffs[0.1].mean), f"{name}: {diffs}"
        # ...and at 1 µs it is indistinguishable from zero.
        assert abs(diffs[0.001].mean) <= diffs[0.001].half_width, f"{name}: 1 µs window vs greedy: {diffs[0.001]}"

    # Request by request: the share of requests batched differently from greedy batching falls at
    # least linearly with the window (a window of w catches an extra arrival with probability ~λw).
    def share_rebatched(max_wait_ms: float) -> float:
        shares = []
        for rep_w, rep_0 in zip(runs[max_wait_ms].replications, greedy.replications, strict=True):
            assert rep_w.requests is not None and rep_0.requests is not None
            np.testing.assert_array_equal(rep_w.requests["arrival_s"], rep_0.requests["arrival_s"])  # same arrivals
            shares.append(np.mean(rep_w.requests["batch_size"] != rep_0.requests["batch_size"]))
        return float(np.mean(shares))

    shares = {w: share_rebatched(w) for w in WINDOWS_MS}
    assert shares[1.0] > 0.1, shares
    assert shares[0.1] < shares[1.0] / 3, shares
    assert shares[0.001] < shares[0.1] / 10, shares
