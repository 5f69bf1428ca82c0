"""The load-balancer registry (capsim/serving/dataplane/balancers.py): every registered balancer keeps
the contract the compiled data plane relies on and runs end to end; `weighted_random`'s own rule."""

from __future__ import annotations

import numpy as np
import pytest

from capsim import simulate
from capsim.serving.dataplane.balancers import BALANCERS, weighted_random
from capsim.serving.dataplane.layout import I_LB_POS, N_INTS
from tests.scenario_helpers import make_scenario


@pytest.mark.parametrize("name", list(BALANCERS))
def test_each_pick_is_a_ready_slot_and_takes_its_draws(name: str) -> None:
    entry = BALANCERS[name]
    rng = np.random.default_rng(5)
    ready = np.array([7, 2, 5, 0], dtype=np.int64)  # slots, in balancer order
    loads = np.zeros(8, dtype=np.int64)
    ints = np.zeros(N_INTS, dtype=np.int64)
    draws = rng.random(4096)
    picked = set()
    for _ in range(1000):
        loads[:] = rng.integers(0, 4, 8)
        before = ints[I_LB_POS]
        slot = entry.pick(ints, ready, 3, loads, draws)  # the first 3 are ready
        assert slot in (7, 2, 5)
        assert ints[I_LB_POS] - before == entry.draws_per_pick, "a pick must take exactly draws_per_pick draws"
        picked.add(slot)
    assert picked == {7, 2, 5}


@pytest.mark.parametrize("name", list(BALANCERS))
def test_each_balancer_runs_in_the_data_plane(name: str) -> None:
    scenario = make_scenario("duration_s=20", "workload.arrival.rate_rps=150", "serving.replicas=3",
                             f"serving.load_balancer={name}", "serving.batching.max_batch_size=4",
                             "serving.batching.max_wait_ms=5")  # fmt: skip
    frame = simulate(scenario).requests_frame()
    share = np.bincount(frame["replica"].to_numpy(), minlength=3) / len(frame)
    assert np.all(share > 0.2), share  # 3 equal replicas share the load, whatever the rule


def test_weighted_random_weighs_by_one_over_one_plus_outstanding() -> None:
    ready = np.array([0, 1, 2], dtype=np.int64)
    loads = np.array([0, 1, 3], dtype=np.int64)
    draws = np.random.default_rng(1).random(60_000)
    ints = np.zeros(N_INTS, dtype=np.int64)
    picks = np.array([weighted_random(ints, ready, 3, loads, draws) for _ in range(draws.size)])
    weights = np.array([1.0, 1 / 2, 1 / 4])
    np.testing.assert_allclose(np.bincount(picks, minlength=3) / picks.size, weights / weights.sum(), atol=0.01)
