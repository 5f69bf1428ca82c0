"""Graphs of models against queueing theory: a tandem of M/M/1 stations (Jackson's product form),
a Poisson split into independent Poisson fleets, and a conditional route's share."""

from __future__ import annotations

import math

import pytest

from capsim import simulate
from tests.graph.helpers import graph_scenario, stage

RATE_RPS = 5.0


def poisson(rate_rps: float = RATE_RPS) -> dict:
    return {"arrival": {"kind": "poisson", "rate_rps": rate_rps}}


@pytest.mark.slow
def test_tandem_mm1_end_to_end_mean_is_the_sum_of_the_sojourns() -> None:
    # Jackson (1957): in a tandem of M/M/1 stations each behaves as an M/M/1 queue fed at rate
    # lambda, so the mean end-to-end time is sum 1/(mu_i - lambda): 1/(10-5) + 1/(6.67-5) = 0.8 s.
    stages = {"a": stage(100, "exponential", next={"to": "b"}), "b": stage(150, "exponential")}
    scenario = graph_scenario("a", stages, "duration_s=1500", "warmup_s=100", workload=poisson())
    result = simulate(scenario, replications=4)
    expected_ms = 1000 * (1 / (10 - RATE_RPS) + 1 / (1000 / 150 - RATE_RPS))
    mean_ms, half_ms = result.summary["latency_ms"]["mean"], result.summary["ci95"]["latency_ms"]["mean"]
    assert abs(mean_ms - expected_ms) <= half_ms + 0.02 * expected_ms, (mean_ms, half_ms)
    for name, mu in (("a", 10.0), ("b", 1000 / 150)):
        assert abs(result.summary["stages"][name]["utilization"] - RATE_RPS / mu) < 0.03
    # Without warm-up (which stages apply at their own arrival) the end-to-end mean is exactly the
    # sum of the stages' means: every request visits both once.
    summary = simulate(scenario.model_copy(update={"warmup_s": 0.0, "duration_s": 300.0})).summary
    stage_sum = sum(summary["stages"][n]["latency_ms"]["mean"] for n in ("a", "b"))
    assert abs(summary["latency_ms"]["mean"] - stage_sum) < 1e-9 * stage_sum


def test_poisson_split_gives_independent_mm1_fleets() -> None:
    # A Poisson stream of rate lambda split at random with p = 0.3 gives Poisson streams of rates
    # 0.3 lambda and 0.7 lambda: each version is an M/M/1 queue, mean 1/(mu - p lambda).
    stages = {"v1": stage(100, "exponential"), "v2": stage(100, "exponential")}
    scenario = graph_scenario({"split": {"v1": 0.7, "v2": 0.3}}, stages, "duration_s=3000", "warmup_s=100",
                              workload=poisson(8.0))  # fmt: skip
    summary = simulate(scenario).summary
    n = summary["requests"]["arrived"]
    share = summary["by_version"]["v2"]["share"]
    assert abs(share - 0.3) < 3 * math.sqrt(0.3 * 0.7 / n)
    for name, p in (("v1", 0.7), ("v2", 0.3)):
        expected_ms = 1000 / (10 - p * 8.0)
        got = summary["by_version"][name]["latency_ms"]["mean"]
        assert abs(got - expected_ms) < 0.08 * expected_ms, (name, got, expected_ms)
        assert summary["by_version"][name]["latency_ms"]["mean"] == summary["stages"][name]["latency_ms"]["mean"]


def test_a_ten_percent_route_carries_ten_percent() -> None:
    stages = {"small": stage(5, next={"to": "big", "fraction": 0.1}), "big": stage(40)}
    summary = simulate(graph_scenario("small", stages, "duration_s=600", workload=poisson(20.0))).summary
    sent = summary["stages"]["small"]["requests"]["completed"]
    went = summary["stages"]["big"]["requests"]["arrived"]
    assert abs(went / sent - 0.1) < 3 * math.sqrt(0.1 * 0.9 / sent), (went, sent)
    # Every request ends once: at the small model (90%) or the big one (10%).
    assert summary["requests"]["completed"] == summary["requests"]["arrived"] == sent
    cascade_ms = summary["latency_ms"]["mean"]
    assert 5 < cascade_ms < 5 + 0.2 * 40
