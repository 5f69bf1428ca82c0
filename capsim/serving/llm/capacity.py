"""A steady-state estimate of what one LLM engine replica serves at full load, for `capsim check`,
the stability warnings and the planners' bounds (capsim/stability.py) — an estimate, not the rule
the simulation follows (that is capsim/serving/llm/kernel.py).

With mean prompt P and output O tokens, a full engine keeps D requests decoding, each holding on
average P + O/2 tokens of KV cache: D = min(max_num_seqs, KV tokens / (P + O/2)). To keep D in
flight it must admit D/O requests per step, i.e. prefill T = D·P/O tokens per step; when D + T exceed
the token budget, D shrinks to budget·O/(O + P). One step then takes t = llm_step_time_s(T, D,
C = D·(P + O/2), N = D/O), and the replica completes D/(O·t) requests per second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from capsim.scenario.schema import Scenario
    from capsim.serving.llm.fleet import EngineSettings


def mean_tokens(scenario: Scenario) -> tuple[float, float]:
    """Mean prompt and output tokens per request (a trace's columns, or the distributions' means)."""
    from capsim.workload.tokens import TraceTokens, trace_token_column
    from capsim.workload.trace import TraceArrival

    workload = scenario.workload
    assert workload is not None and workload.tokens is not None
    means = []
    for side, default in (("input", "ContextTokens"), ("output", "GeneratedTokens")):
        dist = getattr(workload.tokens, side)
        if isinstance(dist, TraceTokens):
            assert isinstance(workload.arrival, TraceArrival)
            column = trace_token_column(workload.arrival, dist.column or default, f"workload.tokens.{side}")
            means.append(float(np.mean(column)))
        else:
            means.append(float(dist.expected_mean()))
    return means[0], means[1]


def replica_capacity_rps(engine: EngineSettings, params: np.ndarray, prompt: float, output: float) -> float:
    """Requests per second one replica completes at full load (module docstring)."""
    from capsim.servicetime.llm_step import llm_step_time_s

    held = prompt + output / 2.0
    decode = min(float(engine.max_num_seqs), engine.kv_cache_blocks * engine.block_size / held)
    prefill = decode * prompt / output
    budget = float(engine.max_num_batched_tokens)
    if decode + prefill > budget:
        decode = budget * output / (output + prompt)
        prefill = budget - decode
    step_s = llm_step_time_s(params, prefill, decode, decode * held, decode / output)
    return decode / (output * step_s) if step_s > 0 else np.inf


def llm_capacity_rps(scenario: Scenario) -> float:
    """The fleet's estimated capacity: `serving.replicas` replicas at full load."""
    from capsim.servicetime.llm_step import step_params
    from capsim.serving.llm.run import engine_settings, hardware_spec

    model = scenario.model.shape() if scenario.model is not None else None

    def spec() -> object:
        return hardware_spec(scenario)

    engine = engine_settings(scenario, model, spec)  # type: ignore[arg-type]
    needs_hardware = scenario.service.kind in ("llm_roofline", "llm_fitted")
    params = step_params(scenario.service, model, hardware_spec(scenario) if needs_hardware else None,
                         scenario.hardware.gpus_per_replica)  # fmt: skip
    prompt, output = mean_tokens(scenario)
    return int(getattr(scenario.serving, "replicas", 1)) * replica_capacity_rps(engine, params, prompt, output)
