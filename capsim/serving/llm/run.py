"""One replication of an LLM scenario (`serving.mode: llm`): the engine settings resolved from the
scenario (vLLM's defaults, the model's context, the KV blocks its GPU memory holds), the arrivals
with their token counts, the fleet run on SimPy's clock, and the summary (capsim/serving/llm/summary.py).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from capsim.errors import CapsimInputError
from capsim.rng import RandomStreams
from capsim.servicetime.llm_step import step_params
from capsim.serving.llm.fleet import ArrivalChunk, EngineSettings, LlmFleet, Sessions, new_plane
from capsim.serving.llm.metrics import LlmTally
from capsim.serving.llm.pool import LlmPool
from capsim.serving.llm.spec import LlmServing
from capsim.serving.llm.summary import RowBins, llm_summary
from capsim.serving.pull_run import ModeRun

if TYPE_CHECKING:
    from capsim.hardware.model_catalogue import ModelShape
    from capsim.hardware.spec import HardwareSpec
    from capsim.scenario.schema import Scenario

_MIN_DRAIN_S = 60.0  # as the other modes: the run goes on after the last arrival to finish work
_PUMP_STEPS = 200  # the control plane advances the data plane this often (and at every control event)
CHUNK = 1 << 16  # requests handed to the kernel at a time


def hardware_spec(scenario: Scenario) -> HardwareSpec:
    """The catalogue entry of the scenario's hardware (shipped catalogue and inline fields)."""
    from capsim.hardware import resolve_hardware
    from capsim.scenario.catalogue import scenario_catalogue

    hardware = scenario.hardware
    return resolve_hardware(hardware.name, None, scenario_catalogue(hardware))


def engine_settings(scenario: Scenario, model: ModelShape | None, spec: Callable[[], HardwareSpec]) -> EngineSettings:
    """The replica's scheduler and cache with vLLM's defaults filled in: batch limits by GPU
    (`LlmScheduler.batch_limits`), max_model_len = the model's context, and kv_cache_blocks from the
    GPU's memory (capsim.hardware.kv_memory) when not given. `spec` gives the hardware entry (asked
    for only when a default needs it)."""
    serving = scenario.serving
    assert isinstance(serving, LlmServing)
    sched = serving.scheduler
    if sched.max_num_seqs is None or sched.max_num_batched_tokens is None:
        entry = spec()
        memory = entry.memory_gb.value if entry.memory_gb is not None else None
        seqs, tokens = sched.batch_limits(entry.name, memory)
    else:
        seqs, tokens = sched.max_num_seqs, sched.max_num_batched_tokens
    if sched.max_model_len is not None:
        max_len = sched.max_model_len
    elif model is not None:
        max_len = model.max_context
    else:
        raise CapsimInputError("give model: (its context is max_model_len) or serving.scheduler.max_model_len",
                               field="serving.scheduler.max_model_len")  # fmt: skip
    blocks = sched.kv_cache_blocks
    if blocks is None:
        if model is None:
            raise CapsimInputError("kv_cache_blocks is derived from the model's size: add model: {name: ...} "
                                   "or give kv_cache_blocks", field="serving.scheduler.kv_cache_blocks")  # fmt: skip
        from capsim.hardware.kv_memory import kv_cache_blocks

        blocks = kv_cache_blocks(model, spec(), block_size=sched.block_size, tp=scenario.hardware.gpus_per_replica,
                                 gpu_memory_utilization=sched.gpu_memory_utilization)  # fmt: skip
    return EngineSettings(seqs, tokens, sched.chunked_prefill, sched.block_size, blocks,
                          sched.enable_prefix_caching, max_len)  # fmt: skip


def workload_draws(scenario: Scenario, streams: RandomStreams) -> tuple[list[ArrivalChunk], Sessions | None]:
    """Every arrival of the run with its prompt and output tokens (capsim.workload.tokens, on their
    own streams: changing the engine never changes the workload), in chunks of CHUNK. Each request
    is its own prefix (key 2·id). With `workload.session` each arrival starts a session
    (capsim.workload.sessions): the chunks hold the first turns (request id = turn index, prefix key
    2·session + 1, shared by its turns) and `Sessions` every turn, for the engine to send the
    follow-up turns (kernel.next_turn)."""
    from capsim.workload.sessions import sample_sessions
    from capsim.workload.tokens import sample_token_counts
    from capsim.workload.trace import TraceArrival

    workload = scenario.workload
    assert workload is not None and workload.tokens is not None
    times = workload.arrival.times(streams.stream("arrivals"), scenario.duration_s)
    sessions = None
    if workload.session is None:
        trace = workload.arrival if isinstance(workload.arrival, TraceArrival) else None
        prompt, output = sample_token_counts(workload.tokens, times.size, streams, trace)
        ids = np.arange(times.size, dtype=np.int64)
        keys = 2 * ids
    else:
        draws = sample_sessions(workload.session, workload.tokens, times.size, streams)
        ids = draws.first_turn[:-1]
        prompt, output = draws.prompt_tokens[ids], draws.output_tokens[ids]
        keys = 2 * np.arange(times.size, dtype=np.int64) + 1
        next_turn = np.arange(1, draws.prompt_tokens.size + 1, dtype=np.int64)
        next_turn[draws.first_turn[1:] - 1] = -1  # a session's last turn
        sessions = Sessions(draws.prompt_tokens, draws.output_tokens, draws.think_s, next_turn)
    chunks = [ArrivalChunk(times[i : i + CHUNK], prompt[i : i + CHUNK], output[i : i + CHUNK], keys[i : i + CHUNK],
                           ids[i : i + CHUNK]) for i in range(0, times.size, CHUNK)]  # fmt: skip
    return chunks, sessions


def _request_columns(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The output rows as the run's request table, in arrival order, under the request log's names
    where they mean the same (`start_s`: the first step that scheduled the request)."""
    rows = {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}
    order = np.argsort(rows["id"], kind="stable")
    names = {"arrival_s": "arrival_s", "first_sched_s": "start_s", "first_token_s": "first_token_s",
             "end_s": "end_s", "replica": "replica", "outcome": "outcome", "prompt": "input_tokens",
             "output": "output_tokens", "preempted": "preemptions"}  # fmt: skip
    return {new: rows[old][order] for old, new in names.items()}


def _pump(env: simpy.Environment, pool: LlmPool, duration_s: float) -> Generator[simpy.Event, Any, None]:
    """Advance the data plane along SimPy's clock (a control process reading the fleet syncs it
    itself first)."""
    step_s = duration_s / _PUMP_STEPS
    for k in range(1, _PUMP_STEPS + 1):
        yield env.timeout(k * step_s - env.now)
        pool.sync()


def run_llm(
    scenario: Scenario,
    seed: int,
    replication: int,
    ticks: np.ndarray,
    keep_requests: bool,
    on_env: Callable[[simpy.Environment], None] | None = None,
) -> ModeRun:
    """Simulate one replication; `ticks` are the sample times of the time series."""
    serving = scenario.serving
    assert isinstance(serving, LlmServing)
    streams = RandomStreams(seed, replication)
    model = scenario.model.shape() if scenario.model is not None else None
    cached: list[HardwareSpec] = []

    def spec() -> HardwareSpec:
        if not cached:
            cached.append(hardware_spec(scenario))
        return cached[0]

    engine = engine_settings(scenario, model, spec)
    needs_hardware = scenario.service.kind in ("llm_roofline", "llm_fitted")
    tp = scenario.hardware.gpus_per_replica
    params = step_params(scenario.service, model, spec() if needs_hardware else None, tp)
    horizon_s = scenario.duration_s + max(scenario.duration_s, _MIN_DRAIN_S)
    chunks, sessions = workload_draws(scenario, streams)
    plane = new_plane(engine, params, load_balancer=serving.load_balancer, slots=serving.replicas, ticks=ticks,
                      warmup_s=scenario.warmup_s, horizon_s=horizon_s, arrivals_end_s=scenario.duration_s,
                      turns=sessions)  # fmt: skip
    slo = scenario.slo
    slo_s: dict[str, float] = {}
    if slo is not None:
        latency_ms = slo.latency_ms if slo.has_latency_bound() else None
        bounds = {"ttft": slo.ttft_ms, "tpot": slo.tpot_ms, "latency": latency_ms}
        slo_s = {name: ms / 1000.0 for name, ms in bounds.items() if ms is not None}
    tally = LlmTally(scenario.warmup_s, slo_s, exact=keep_requests)
    bins = RowBins(ticks)
    kept: list[dict[str, np.ndarray]] = []

    def on_rows(rows: dict[str, np.ndarray]) -> None:
        tally.add(rows)
        bins.add(rows)
        if keep_requests:
            kept.append(rows)

    from capsim.serving.dataplane.balancers import BALANCERS

    balancer = BALANCERS.get(serving.load_balancer)  # None: an LLM router (no draws)
    lb_rng = streams.stream("balancer") if balancer is not None and balancer.draws_per_pick else None
    fleet = LlmFleet(plane, iter(chunks), on_rows, lb_rng)
    env = simpy.Environment()
    precision = getattr(scenario.service, "precision", "bf16")  # llm_linear/llm_fitted name none: BF16
    cold = serving.cold_start.resolved(model, precision, starts_replicas=serving.autoscaling is not None)
    pool = LlmPool(env, fleet, serving.replicas, cold, streams.stream("coldstart"), ticks)
    env.process(_pump(env, pool, scenario.duration_s))
    if serving.autoscaling is not None:
        from capsim.autoscale.controller import AutoscaleController
        from capsim.serving.llm.scaling import ScaledEngines

        AutoscaleController(env, ScaledEngines(pool), serving.autoscaling, serving.schedule, serving.clock_start_h)
    if on_env is not None:
        on_env(env)
    env.run(until=scenario.duration_s)
    pool.sync()
    fleet.advance_to(horizon_s)  # the drain: arrivals have stopped; the kernel stops when all is done
    end_s = max(fleet.now_s, scenario.duration_s)
    fleet.integrate_levels_to(end_s)
    fleet.flush()
    unfinished = fleet.unfinished_rows()["arrival_s"]
    in_flight = int((unfinished >= scenario.warmup_s).sum())
    summary, timeseries, changes = llm_summary(scenario, seed, engine, fleet.plane, pool, tally, bins, in_flight,
                                               end_s)  # fmt: skip
    from capsim.stability import stability_warnings  # (capsim.stability reads this package's spec)

    summary["warnings"] = stability_warnings(scenario)
    requests = _request_columns(kept) if kept else None
    return ModeRun(summary, requests, timeseries, changes)
