"""LLM cold start (capsim/serving/llm/coldstart.py): the model load is the weights' bytes over the
storage bandwidth plus the engine's warm-up, unless given; a replica the pool starts serves after
provisioning + image pull + that load."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from capsim import load_scenario
from capsim.distributions import FixedDuration
from capsim.errors import CapsimInputError
from capsim.hardware.model_catalogue import resolve_model
from capsim.serving.llm.coldstart import LlmColdStart
from capsim.serving.llm.fleet import LlmFleet, new_plane
from capsim.serving.llm.pool import LlmPool
from tests.llm.engine_helpers import chunks, engine, linear_params


def test_model_load_is_weight_bytes_over_bandwidth_plus_warmup() -> None:
    llama8 = resolve_model("llama-3.1-8b")
    default = LlmColdStart().resolved(llama8, "bf16").model_load_s
    assert isinstance(default, FixedDuration)
    # 2 bytes per BF16 parameter at 2 GB/s, then vLLM's 34.1 s of compile, CUDA graphs and warm-up
    assert default.value_s == pytest.approx(llama8.params_total * 2 / 2e9 + 34.1)
    assert default.value_s == pytest.approx(42.1, abs=0.1)
    llama70 = resolve_model("llama-3.1-70b")
    fast = LlmColdStart(storage_gb_per_s=5, engine_warmup_s=60).resolved(llama70, "fp8").model_load_s
    assert isinstance(fast, FixedDuration)
    assert fast.value_s == pytest.approx(llama70.params_total * 1 / 5e9 + 60.0)  # FP8: 1 byte per parameter


def test_a_given_model_load_is_kept_and_a_missing_model_named() -> None:
    given = LlmColdStart(model_load_s=FixedDuration(value_s=7.0))
    assert given.resolved(None, "bf16").model_load_s == FixedDuration(value_s=7.0)
    with pytest.raises(CapsimInputError, match=r"serving\.cold_start\.model_load_s"):
        LlmColdStart().resolved(None, "bf16")


def test_a_fixed_fleet_without_a_model_runs() -> None:
    """A fixed fleet starts ready and never cold-starts, so an llm_linear scenario with no `model:`
    (its context given as max_model_len) runs; the same fleet under an autoscaler still needs one."""
    from capsim import simulate

    no_model = ["model=null", "serving.scheduler.max_model_len=8192", "duration_s=60", "warmup_s=0"]
    scenario = load_scenario("scenarios/llm-check.yaml", no_model)
    assert scenario.model is None
    assert simulate(scenario).summary["ttft_ms"]["p50"] == pytest.approx(56.2)
    assert LlmColdStart().resolved(None, "bf16", starts_replicas=False).model_load_s == FixedDuration(value_s=0.0)


def test_scenario_field_accepts_the_llm_cold_start() -> None:
    cold_start = "serving.cold_start={storage_gb_per_s: 8, engine_warmup_s: 12, warm_pool: 1}"
    scenario = load_scenario("scenarios/llm-check.yaml", [cold_start])
    cold = scenario.serving.cold_start
    assert isinstance(cold, LlmColdStart) and cold.storage_gb_per_s == 8 and cold.warm_pool == 1
    with pytest.raises(CapsimInputError, match="storage_gb_per_s"):
        load_scenario("scenarios/llm-check.yaml", ["serving.cold_start.storage_gb_per_s=0"])


def test_a_new_replica_serves_after_node_image_weights_and_warmup() -> None:
    """Scale 1 -> 2 at t = 1 s: provisioning 30 s + image 20 s + 16.06 GB at 4 GB/s (4.015 s) + warm-up
    10 s: the new replica is billed from 1 s and ready at 65.015 s."""
    llama8 = resolve_model("llama-3.1-8b")
    cold = LlmColdStart(provisioning_s=FixedDuration(value_s=30), image_pull_s=FixedDuration(value_s=20),
                        storage_gb_per_s=4, engine_warmup_s=10).resolved(llama8, "bf16")  # fmt: skip
    ticks = np.array([100.0])
    plane = new_plane(engine(), linear_params(), load_balancer="round_robin", slots=2, ticks=ticks, warmup_s=0.0,
                      horizon_s=200.0)  # fmt: skip
    fleet = LlmFleet(plane, iter(chunks([0.5], 10, 2)), lambda rows: None, None)
    env = simpy.Environment()
    pool = LlmPool(env, fleet, 1, cold, np.random.default_rng(0), ticks)
    env.timeout(1.0).callbacks.append(lambda _e: pool.scale_to(2))
    env.run(until=100.0)
    ready_s = 1.0 + 30 + 20 + llama8.params_total * 2 / 4e9 + 10
    ready, billed = pool.levels.ready, pool.levels.billed
    assert (ready.times_s[-1], ready.values[-1]) == pytest.approx((ready_s, 2))
    assert (billed.times_s[-1], billed.values[-1]) == (1.0, 2)
