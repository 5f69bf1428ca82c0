"""Utilization law: the time-weighted busy fraction of the executors equals λE[S]/c.

With batch size 1, E[S] is the service model's mean and c the executors of the fleet; a cache in
front removes its hits (λ(1 - h)). With batching one executor serves a whole batch, so the law reads
U = (λ/E[K]) E[S(K)] / c, with E[K] the mean batch size; for the linear model E[S(K)] = base + per_item
E[K], so U = λ (base/E[K] + per_item) / c. Tolerances: 99.9% t intervals over independent replications.
"""

from __future__ import annotations

import numpy as np
import pytest

from capsim.engine import simulate
from tests.theory.replications import assert_matches, interval, per_replication, queue_scenario

REPLICATIONS = 10

# (name, rate_rps, service, overrides, E[S] in seconds, executors, cache hit ratio)
BATCH_ONE_CASES = [
    ("exponential-1x3", 400.0, {"kind": "exponential", "mean_ms": 5.0}, ["serving.instances_per_replica=3"], 0.005, 3,
     0.0),
    ("lognormal-4x2-power-of-two", 900.0, {"kind": "lognormal", "mean_ms": 6.0, "cv": 2.0},
     ["serving.replicas=4", "serving.instances_per_replica=2", "serving.load_balancer=power_of_two"], 0.006, 8, 0.0),
    ("deterministic-3x1-round-robin-cache", 500.0, {"kind": "deterministic", "mean_ms": 4.0},
     ["serving.replicas=3", "serving.cache.hit_ratio=0.25"], 0.004, 3, 0.25),
    ("linear-2x1-random-gamma", 150.0, {"kind": "linear", "base_ms": 3.0, "per_item_ms": 2.0, "cv": 0.5},
     ["serving.replicas=2", "serving.load_balancer=random", "workload.arrival={kind: gamma, rate_rps: 150, cv: 2}"],
     0.005, 2, 0.0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rate_rps", "service", "overrides", "mean_s", "executors", "hit_ratio"),
    [case[1:] for case in BATCH_ONE_CASES],
    ids=[case[0] for case in BATCH_ONE_CASES],
)
def test_utilization_is_offered_load_per_executor(
    rate_rps: float, service: dict, overrides: list[str], mean_s: float, executors: int, hit_ratio: float
) -> None:
    scenario = queue_scenario(
        rate_rps=rate_rps, service=service, duration_s=40.0, warmup_s=4.0, seed=5, overrides=overrides
    )
    result = simulate(scenario, replications=REPLICATIONS)
    expected = rate_rps * (1 - hit_ratio) * mean_s / executors
    assert 0.3 < expected < 0.8
    utilization = per_replication(result, "utilization")
    assert_matches(utilization, expected, "utilization", max_rel_half_width=0.04)
    # The same law in absolute terms: mean busy executors = λ(1 - h)E[S] (the offered load in Erlangs).
    assert_matches(per_replication(result, "levels", "busy_executors_mean"), expected * executors, "busy executors")


def assert_near_zero(values: np.ndarray, what: str, *, scale: float, width: float) -> None:
    """The replications' mean of `values` is within its 99.9% interval of 0, and that interval is
    narrower than `width` × `scale`."""
    ci = interval(values)
    assert abs(ci.mean) <= ci.half_width, f"{what}: {ci} excludes 0"
    assert ci.half_width <= width * scale, f"{what}: {ci} too wide for a {width:.1%} check"


# (0, 600): greedy, light load; (2, 1000) and (5, 1500): the window fills batches; (5, 3000): more
# than the fleet can serve (batches of 16 back to back): U = 1, and the law still holds with X.
@pytest.mark.parametrize(("max_wait_ms", "rate_rps"), [(0.0, 600.0), (2.0, 1000.0), (5.0, 1500.0), (5.0, 3000.0)])
def test_utilization_with_batching(max_wait_ms: float, rate_rps: float) -> None:
    base_ms, per_item_ms, executors = 4.0, 0.5, 2
    scenario = queue_scenario(
        rate_rps=rate_rps,
        service={"kind": "linear", "base_ms": base_ms, "per_item_ms": per_item_ms},
        instances=executors,
        duration_s=10.0,
        warmup_s=1.0,
        seed=8,
        max_batch_size=16,
        max_wait_ms=max_wait_ms,
    )
    result = simulate(scenario, replications=REPLICATIONS)
    utilization = per_replication(result, "utilization")
    assert float(per_replication(result, "batch_size", "mean").mean()) > 1.5  # batching is really happening
    # The law in terms of what the executors did inside the window: X/E[K] batches per second started
    # (X requests per second), each busy for base + per_item K on one of c executors. (The summary's
    # throughput counts requests by arrival, which differs from the service rate in overload.)
    window_s = scenario.duration_s - scenario.warmup_s
    predicted = []
    for rep in result.replications:
        cols = rep.requests
        assert cols is not None
        started = (cols["start_s"] >= scenario.warmup_s) & (cols["start_s"] < scenario.duration_s)
        sizes = cols["batch_size"][started]
        batches = float(np.sum(1.0 / sizes))  # each request carries 1/K of its batch
        predicted.append((batches * base_ms + sizes.size * per_item_ms) / 1000.0 / window_s / executors)
    assert_near_zero(
        utilization - np.asarray(predicted),
        "U - X (base/E[K] + per_item)/c",
        scale=float(utilization.mean()),
        width=0.005,
    )
