"""Finite queues: M/M/c/(c+K) via `queue_capacity: K` (K waiting places per replica, not counting
those in service, docs/model.md). The share of rejected arrivals is the blocking probability
(PASTA), and with K = 0 the loss system's is Erlang B. Tolerances: 99.9% t intervals over
independent replications."""

from __future__ import annotations

import numpy as np
import pytest

from capsim.engine import simulate
from tests.theory import formulas as f
from tests.theory.replications import assert_matches, per_replication, queue_scenario

MEAN_MS = 10.0


def rejected_share(c: int, a: float, k: int, seed: int) -> np.ndarray:
    """Per replication: the share of arrivals rejected by a replica with c executors and k waiting places."""
    lam = a * 1000.0 / MEAN_MS
    customers = 20_000
    duration_s = customers / lam
    scenario = queue_scenario(
        rate_rps=lam,
        service={"kind": "exponential", "mean_ms": MEAN_MS},
        instances=c,
        duration_s=duration_s,
        warmup_s=duration_s / 10,
        seed=seed,
        overrides=[f"serving.queue_capacity={k}"],
    )
    result = simulate(scenario, replications=10)
    return per_replication(result, "requests", "rejected") / per_replication(result, "requests", "arrived")


@pytest.mark.parametrize(("c", "a", "k"), [(1, 0.8, 3), (2, 2.0, 2), (4, 5.0, 6)])
def test_finite_queue_blocks_as_mmck(c: int, a: float, k: int) -> None:
    expected = f.mmck_blocking(c, a, k)
    assert 0.05 < expected < 0.4
    assert_matches(rejected_share(c, a, k, seed=3), expected, f"M/M/{c}/{c + k} blocking", max_rel_half_width=0.05)


@pytest.mark.parametrize(("c", "a"), [(1, 0.5), (4, 3.0)])
def test_no_waiting_room_is_erlang_b(c: int, a: float) -> None:
    share = rejected_share(c, a, 0, seed=4)
    assert np.all(share < 1.0), "everything rejected"
    assert_matches(share, f.erlang_b(c, a), f"M/M/{c}/{c} blocking (Erlang B)", max_rel_half_width=0.05)
