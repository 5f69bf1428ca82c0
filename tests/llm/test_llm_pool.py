"""The LLM fleet's control plane (capsim/serving/llm/pool.py): a replica asked to leave drains — it
takes no new request, finishes those it holds, and stops being billed when its last one completes;
a new replica is billed from the start of its cold start and serves once it ends; a trace of KEDA
scaling a day of chat on the engines' concurrency."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from capsim import load_scenario, simulate
from capsim.distributions import FixedDuration
from capsim.serving.coldstart import ColdStart
from capsim.serving.llm.fleet import LlmFleet, new_plane
from capsim.serving.llm.plane import C_BLOCKS, COMPLETED, I_CAP_BLOCKS
from capsim.serving.llm.pool import LlmPool
from tests.llm.engine_helpers import chunks, engine, linear_params

COLD = ColdStart(provisioning_s=FixedDuration(value_s=1.0), image_pull_s=FixedDuration(value_s=1.0),
                 model_load_s=FixedDuration(value_s=1.0))  # fmt: skip


def test_scale_in_drains_and_scale_out_waits_for_the_cold_start() -> None:
    """Two replicas, round robin: requests 0-3 at t = 0 (prompt 100, output 10) go 0, 1, 0, 1. Each
    replica prefills its two prompts in one step (5 + 20 = 25 ms) and decodes both in 9 steps of
    5.2 ms: done at 71.8 ms. At 20 ms the pool scales to 1: replica 1 (the newest) leaves the
    balancer, finishes its two requests and stops being billed at 71.8 ms. Request 4 (50 ms) can only
    go to replica 0, where it joins the step starting at 51.0 ms (its prompt and two decodes: 15.2 ms),
    so requests 0 and 2 end 3 steps of 5.3 ms later, at 82.1 ms. At 100 ms the pool scales to 2: the
    new replica (index 2) is billed from then and serves from 3.1 s (a 3 s cold start): requests at
    3.2 and 3.3 s go to both replicas."""
    settings = engine()
    ticks = np.array([1.0, 5.0, 10.0])
    plane = new_plane(settings, linear_params(), load_balancer="round_robin", slots=2, ticks=ticks, warmup_s=0.0,
                      horizon_s=20.0)  # fmt: skip
    rows: list[dict[str, np.ndarray]] = []
    arrivals = chunks([0.0, 0.0, 0.0, 0.0, 0.05, 3.2, 3.3], 100, 10)
    fleet = LlmFleet(plane, iter(arrivals), rows.append, None)
    env = simpy.Environment()
    pool = LlmPool(env, fleet, 2, COLD, np.random.default_rng(0), ticks)

    def control() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(0.02)
        pool.scale_to(1)
        yield env.timeout(0.08)
        pool.scale_to(2)

    env.process(control())
    env.run(until=5.0)
    pool.sync()
    fleet.advance_to(20.0)
    fleet.flush()
    out = {name: np.concatenate([b[name] for b in rows]) for name in rows[0]}
    order = np.argsort(out["id"])
    replica = out["replica"][order]
    assert (out["outcome"] == COMPLETED).all()
    assert replica.tolist()[:5] == [0, 1, 0, 1, 0]
    assert sorted(replica.tolist()[5:]) == [0, 2]
    np.testing.assert_allclose(out["end_s"][order][:4], [0.0821, 0.0718, 0.0821, 0.0718])
    billed = [(t, v) for t, v in zip(pool.levels.billed.times_s, pool.levels.billed.values, strict=True)]
    np.testing.assert_allclose(np.array(billed), [[0.0, 2], [0.0718, 1], [0.1, 2]])
    ready = [(t, v) for t, v in zip(pool.levels.ready.times_s, pool.levels.ready.values, strict=True)]
    np.testing.assert_allclose(np.array(ready), [[0.0, 2], [0.02, 1], [3.1, 2]])
    assert fleet.plane.ints[I_CAP_BLOCKS] == 2 * fleet.plane.cfg_i[C_BLOCKS]
    assert pool.starter.cold_starts == 1


def test_keda_scales_the_engines_on_concurrency() -> None:
    """Chat traffic rising from 2 to 30 requests/s and back within the hour, KEDA on waiting +
    running requests (target 16 per replica): the fleet grows from 1 replica, every request is
    served, billing starts at each cold start's start, and the replicas drain back to 1."""
    scenario = load_scenario(
        "scenarios/llm-check.yaml",
        ["duration_s=3600", "warmup_s=300",
         "workload.arrival={kind: diurnal, base_rps: 2, peak_rps: 30, peak_time_h: 12, period_s: 3600}",
         "workload.tokens.input={kind: lognormal, mean: 1000, cv: 1, max: 8000}",
         "workload.tokens.output={kind: lognormal, mean: 200, cv: 1, max: 2000}",
         "service={kind: llm_roofline}", "serving.scheduler={}",
         "serving.autoscaling={kind: keda, min_replicas: 1, max_replicas: 8, metric: concurrency, target: 16, "
         "polling_interval_s: 15}"],
    )  # fmt: skip
    result = simulate(scenario)
    summary = result.summary
    assert summary["requests"]["completed"] == summary["requests"]["arrived"]
    assert summary["replicas"]["max"] >= 3 and summary["replicas"]["cold_starts"] >= 2
    assert summary["replicas"]["billed_mean"] > summary["replicas"]["mean"]  # cold starts are billed
    ready = result.replications[0].replica_changes["ready"]
    assert ready[-1][1] == 1
