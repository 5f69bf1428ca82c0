"""Traffic splits and rollouts: shadow copies, a sticky-user canary, a progressive schedule."""

from __future__ import annotations

import math

import numpy as np

from capsim import simulate
from capsim.serving.graph.routing import split_entry, user_bucket
from capsim.serving.graph.spec import EntrySplit
from tests.graph.helpers import graph_scenario, stage
from tests.scenario_helpers import rows

POISSON = {"arrival": {"kind": "poisson", "rate_rps": 20.0}}


def test_a_shadow_leaves_the_primary_bit_identical_and_is_billed() -> None:
    primary = stage(30, "exponential", next={"to": "rank"})
    rank = stage(20, "exponential")
    plain = simulate(graph_scenario("v1", {"v1": primary, "rank": rank}, "duration_s=300", workload=POISSON))
    shadowed = graph_scenario("v1", {"v1": {**primary, "shadow": ["v2"]}, "rank": rank,
                                     "v2": stage(45, "exponential")}, "duration_s=300", workload=POISSON)  # fmt: skip
    shadow = simulate(shadowed)
    a, b = rows(plain), rows(shadow)
    np.testing.assert_array_equal(a["end_s"], b["end_s"])  # bit for bit: the same seeds, nothing shared
    assert plain.summary["latency_ms"] == shadow.summary["latency_ms"]
    v2 = shadow.summary["stages"]["v2"]
    assert v2["requests"]["arrived"] == shadow.summary["stages"]["v1"]["requests"]["arrived"]
    assert v2["utilization"] > 0.8  # 20 rps x 45 ms
    assert math.isclose(shadow.summary["cost"]["usd"], 1.5 * plain.summary["cost"]["usd"])
    assert "v2" not in shadow.summary["by_version"]


def test_sticky_users_keep_their_version_and_five_percent_of_users_are_on_the_canary() -> None:
    users = np.arange(20_000)
    place = user_bucket(users)
    share = float((place >= 0.95).mean())
    assert abs(share - 0.05) < 3 * math.sqrt(0.05 * 0.95 / users.size)
    split = EntrySplit(split={"v1": 0.95, "v2": 0.05}, sticky_users=20_000,
                       schedule=[{"at_s": 10.0, "split": {"v1": 0.75, "v2": 0.25}}])  # fmt: skip
    # The same user draws (same stream) at two times: a canary user stays on the canary when it grows.
    before = split_entry(split, np.full(5000, 1.0), np.random.default_rng(0), np.random.default_rng(7))
    after = split_entry(split, np.full(5000, 11.0), np.random.default_rng(0), np.random.default_rng(7))
    assert (after[before == 1] == 1).all()
    assert abs((after == 1).mean() - 0.25) < 0.03 and abs((before == 1).mean() - 0.05) < 0.015


def test_canary_share_in_a_run_and_by_version_blocks() -> None:
    stages = {"v1": stage(10), "v2": stage(12)}
    entry = {"split": {"v1": 0.95, "v2": 0.05}, "sticky_users": 50_000}
    summary = simulate(graph_scenario(entry, stages, "duration_s=600", workload=POISSON)).summary
    n = summary["requests"]["arrived"]
    share = summary["by_version"]["v2"]["share"]
    assert abs(share - 0.05) < 3 * math.sqrt(0.05 * 0.95 / n) + 0.005, share
    assert summary["by_version"]["v2"]["requests"]["arrived"] + summary["by_version"]["v1"]["requests"]["arrived"] == n
    assert math.isclose(summary["by_version"]["v2"]["latency_ms"]["p50"], 12.0)
    assert math.isclose(summary["by_version"]["v1"]["latency_ms"]["p50"], 10.0)


def test_progressive_canary_moves_traffic_at_the_given_times() -> None:
    stages = {"v1": stage(10), "v2": stage(10)}
    steps = [{"at_s": 200.0, "split": {"v1": 0.75, "v2": 0.25}}, {"at_s": 400.0, "split": {"v1": 0.0, "v2": 1.0}}]
    entry = {"split": {"v1": 0.95, "v2": 0.05}, "schedule": steps}
    result = simulate(graph_scenario(entry, stages, "duration_s=600", workload=POISSON))
    r = rows(result)
    for lo, hi, share in ((0, 200, 0.05), (200, 400, 0.25), (400, 600, 1.0)):
        window = (r["arrival_s"] >= lo) & (r["arrival_s"] < hi)
        got = float((r["version"][window] == 1).mean())
        assert abs(got - share) <= 3 * math.sqrt(share * (1 - share) / window.sum()) + 1e-12, (lo, got)
