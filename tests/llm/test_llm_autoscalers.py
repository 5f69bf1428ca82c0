"""Every autoscaler on an LLM fleet (capsim/serving/llm/scaling.py): the engines' signals read as
vLLM exports them — checked by hand on a small trace — and HPA, KPA, KEDA and Ray Serve each growing
the fleet under a burst and shrinking it after, on waiting, running, waiting + running or KV use."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from capsim import load_scenario, simulate
from capsim.errors import CapsimInputError
from capsim.serving.coldstart import ColdStart
from capsim.serving.llm.fleet import LlmFleet, new_plane
from capsim.serving.llm.pool import LlmPool
from capsim.serving.llm.scaling import ScaledEngines
from tests.llm.engine_helpers import chunks, engine, linear_params


def test_signals_as_vllm_exports_them() -> None:
    """One replica, max_num_seqs 2, four requests at t = 0 (prompt 100, output 10, blocks of 16):
    two run (7 blocks each: 101 known tokens), two wait. The first step (2 prompts: 5 + 20 ms) and
    decodes of 5.2 ms go on to 71.8 ms, so at 50 ms: running integral 2 x 0.05, waiting gauge 2,
    waiting + running integral 4 x 0.05, busy integral 0.05, KV 14 blocks x 0.05 / 4096."""
    ticks = np.array([1.0])
    plane = new_plane(engine(max_num_seqs=2), linear_params(), load_balancer="round_robin", slots=1, ticks=ticks,
                      warmup_s=0.0, horizon_s=10.0)  # fmt: skip
    fleet = LlmFleet(plane, iter(chunks([0.0] * 4, 100, 10)), lambda rows: None, None)
    env = simpy.Environment()
    engines = ScaledEngines(LlmPool(env, fleet, 1, ColdStart(), np.random.default_rng(0), ticks))
    env.run(until=0.05)
    sample = engines.sample()
    assert sample["running"] == pytest.approx(0.1)
    assert sample["queue"] == 2
    assert sample["concurrency"] == pytest.approx(0.2)
    assert sample["busy"] == pytest.approx(0.05)
    assert sample["kv_used"] == pytest.approx(14 * 0.05 / 4096)
    assert sample["arrivals"] == 4
    assert engines.in_flight_now() == 4
    assert (engines.current, len(engines.ready), len(engines.starting)) == (1, 1, 0)


# 5 req/s, then 80 req/s for ten minutes, then 5 again; each engine runs at most 8 requests (prompt
# 200, output 50: about 0.3 s each, ~25 req/s an engine), so the burst needs 4 or more.
BURST = [
    "duration_s=2400", "warmup_s=0",
    "workload.arrival={kind: steps, steps: [{start_s: 0, rate_rps: 5}, {start_s: 300, rate_rps: 80}, "
    "{start_s: 900, rate_rps: 5}]}",
    "workload.tokens.input={kind: fixed, value: 200}", "workload.tokens.output={kind: fixed, value: 50}",
    "serving.scheduler={max_num_seqs: 8, max_num_batched_tokens: 2048, block_size: 16, kv_cache_blocks: 200}",
    "serving.load_balancer=least_outstanding",
    "serving.cold_start={provisioning_s: {kind: fixed, value_s: 10}, image_pull_s: {kind: fixed, value_s: 0}, "
    "model_load_s: {kind: fixed, value_s: 10}}",
]  # fmt: skip

POLICIES = {
    "hpa-waiting": "{kind: hpa, min_replicas: 1, max_replicas: 8, metric: queue_length, target: 4}",
    "hpa-running": "{kind: hpa, min_replicas: 1, max_replicas: 8, metric: running, target: 6}",
    "hpa-kv": "{kind: hpa, min_replicas: 1, max_replicas: 8, metric: kv_cache_utilization, target: 0.4}",
    "hpa-concurrency": "{kind: hpa, min_replicas: 1, max_replicas: 8, metric: concurrency, target: 8}",
    "kpa": "{kind: kpa, min_replicas: 1, max_replicas: 8, target: 8}",
    "keda-waiting": "{kind: keda, min_replicas: 1, max_replicas: 8, metric: queue_length, target: 4}",
    "keda-running": "{kind: keda, min_replicas: 1, max_replicas: 8, metric: running, target: 6}",
    "ray_serve": "{kind: ray_serve, min_replicas: 1, max_replicas: 8, target_ongoing_requests: 8}",
}


@pytest.mark.parametrize("name", POLICIES)
def test_policy_grows_the_fleet_under_a_burst_and_shrinks_it_after(name: str) -> None:
    scenario = load_scenario("scenarios/llm-check.yaml", [*BURST, f"serving.autoscaling={POLICIES[name]}"])
    result = simulate(scenario)
    summary = result.summary
    assert summary["requests"]["completed"] == summary["requests"]["arrived"]  # nothing refused or lost
    ready = result.replications[0].replica_changes["ready"]
    during = max(v for t, v in ready if 300 <= t <= 900)
    assert during >= 3, ready
    assert max(v for t, v in ready if t < 300) == 1  # 5 req/s fits one engine
    assert ready[-1][1] <= 2 and ready[-1][0] > 900, ready  # and the fleet shrank back after the burst
    assert summary["replicas"]["cold_starts"] >= 2


def test_llm_only_metrics_are_refused_elsewhere_and_zero_minimum_on_llm() -> None:
    with pytest.raises(CapsimInputError, match="LLM engines only"):
        load_scenario("scenarios/quickstart.yaml",
                      ["serving.autoscaling={kind: hpa, max_replicas: 4, metric: running, target: 2}"])  # fmt: skip
    with pytest.raises(CapsimInputError, match="min_replicas"):
        load_scenario("scenarios/llm-check.yaml",
                      ["serving.autoscaling={kind: kpa, min_replicas: 0, max_replicas: 4}"])  # fmt: skip
