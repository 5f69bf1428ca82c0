"""LLM routers (capsim/serving/llm/routers.py), each rule on a small trace: least KV utilization
sends a request to the replica holding the fewest KV blocks; prefix affinity keeps a prefix key on
one replica (rendezvous hashing: only the keys of a replica that leaves move) and so keeps a chat
session's turns where their prefix is cached."""

from __future__ import annotations

import numpy as np
import pytest

from capsim import load_scenario, simulate
from capsim.errors import CapsimInputError
from capsim.serving.llm.fleet import new_plane
from capsim.serving.llm.plane import I_N_READY
from capsim.serving.llm.routers import ROUTERS, prefix_affinity
from tests.llm.engine_helpers import chunks, engine, linear_params, run_engine


def _replicas(load_balancer: str) -> list[int]:
    """Two replicas (blocks of 16, llm_linear 5 ms + 0.1 ms per prompt token). Request 0 at t = 0
    (prompt 1,000) goes first in the rotation, to replica 0, whose step starts at once and holds
    63 blocks until 105 ms. Requests of prompt 10 at 1, 2 and 3 ms: replica 1 takes the one at 1 ms
    (1 block from its step at 1 ms, which ends at 6.1 ms; the later ones wait there, holding none)."""
    arrivals = chunks([0.0, 0.001, 0.002, 0.003], [1000, 10, 10, 10], [10, 100, 100, 100])
    run = run_engine(engine(), arrivals, replicas=2, load_balancer=load_balancer)
    order = np.argsort(run.rows["id"])
    return run.rows["replica"][order].tolist()


def test_least_kv_utilization_sends_to_the_replica_holding_fewest_blocks() -> None:
    # at 2 and 3 ms replica 0 holds 63 blocks and replica 1 one: both go to replica 1
    assert _replicas("least_kv_utilization") == [0, 1, 1, 1]
    # by outstanding requests, the tie at 2 ms (one each) goes round the rotation to replica 0
    assert _replicas("least_outstanding") == [0, 1, 0, 1]
    assert _replicas("round_robin") == [0, 1, 0, 1]


def _affinity_plane(replica_ids: list[int]):  # type: ignore[no-untyped-def]
    p = new_plane(engine(), linear_params(), load_balancer="prefix_affinity", slots=len(replica_ids),
                  ticks=np.array([1.0]), warmup_s=0.0, horizon_s=1.0)  # fmt: skip
    n = len(replica_ids)
    p.ready[:n] = np.arange(n)
    p.slot_replica[:n] = replica_ids
    p.ints[I_N_READY] = n
    return p


def test_prefix_affinity_keeps_keys_and_moves_only_those_of_a_replica_that_left() -> None:
    keys = np.arange(1, 2 * 600, 2)  # sessions' prefix keys (2 * session + 1)
    three = _affinity_plane([0, 1, 2])
    first = [prefix_affinity(three, 3, int(k)) for k in keys]
    assert [prefix_affinity(three, 3, int(k)) for k in keys] == first  # stateless: same key, same replica
    counts = np.bincount(first, minlength=3)
    assert counts.min() >= 150, counts  # 600 keys spread over the three (200 each expected)
    # replica 2 leaves (slots 0 and 1 stay, same ids): its keys move, every other key stays
    two = _affinity_plane([0, 1])
    after = [prefix_affinity(two, 2, int(k)) for k in keys]
    assert all(a == f for a, f in zip(after, first, strict=True) if f != 2)
    assert set(a for a, f in zip(after, first, strict=True) if f == 2) == {0, 1}


def test_prefix_affinity_keeps_sessions_on_their_cache() -> None:
    """Chat sessions of 4 turns on 4 replicas: round robin sends a session's next turn to another
    replica three times in four, where its prefix is not cached; prefix affinity keeps the session
    on one replica, so the prefix hit rate and TTFT approach a single replica's."""
    session = "workload.session={turns: {kind: fixed, value: 4}, think_time_s: {kind: fixed, value_s: 5}}"
    overrides = ["duration_s=300", "warmup_s=30", "serving.replicas=4", "workload.arrival.rate_rps=1.0", session]
    hit, ttft = {}, {}
    for name in ("round_robin", "prefix_affinity"):
        summary = simulate(
            load_scenario("scenarios/llm-check.yaml", [*overrides, f"serving.load_balancer={name}"])
        ).summary
        assert summary["requests"]["completed"] == summary["requests"]["arrived"]
        hit[name], ttft[name] = summary["kv_cache"]["prefix_hit_rate"], summary["ttft_ms"]["mean"]
    assert hit["prefix_affinity"] > 0.5 > 2 * hit["round_robin"], hit
    assert ttft["prefix_affinity"] < 0.8 * ttft["round_robin"], ttft


def test_router_names_are_accepted_and_unknown_ones_listed() -> None:
    assert set(ROUTERS) == {"least_kv_utilization", "prefix_affinity"}
    with pytest.raises(CapsimInputError, match="least_kv_utilization, prefix_affinity"):
        load_scenario("scenarios/llm-check.yaml", ["serving.load_balancer=kv_magic"])
