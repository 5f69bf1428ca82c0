"""The summary and time series of one LLM replication: the `capsim simulate --json` contract
(docs/design.md) — requests, latency_ms, queue_wait_ms, utilization, replicas, cost, slo — plus
the LLM keys: ttft_ms, tpot_ms, itl_ms, tokens, kv_cache, and cost per million input and output
tokens. Time-weighted figures come from the levels the loop integrated per tick bin; per-request
figures from `LlmTally` and the loop's ITL histogram."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from capsim.hardware.cost import billed_cost, replica_energy, usd_per_million
from capsim.metrics.summary import clean_json
from capsim.serving.llm.metrics import LlmTally, itl_summary
from capsim.serving.llm.plane import (
    COMPLETED,
    I_MAX_BATCH,
    I_PREEMPTIONS,
    I_PREFIX_HITS,
    I_PREFIX_QUERIES,
    I_STEPS,
    L_BUSY,
    L_CAP_BLOCKS,
    L_RUNNING,
    L_USED_BLOCKS,
    L_WAITING,
    LlmPlane,
)

if TYPE_CHECKING:
    from capsim.scenario.schema import Scenario
    from capsim.serving.llm.fleet import EngineSettings
    from capsim.serving.llm.pool import LlmPool


class RowBins:
    """Per tick interval, by arrival time: requests arrived and completed, and the completed ones'
    TTFT and E2E sums (for the time series)."""

    def __init__(self, ticks: np.ndarray) -> None:
        self.ticks = ticks
        self.arrived = np.zeros(ticks.size)
        self.completed = np.zeros(ticks.size)
        self.ttft_sum_s = np.zeros(ticks.size)
        self.latency_sum_s = np.zeros(ticks.size)

    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Fold a block of output rows."""
        arrival = rows["arrival_s"]
        size = self.ticks.size
        where = np.minimum(np.searchsorted(self.ticks, arrival, side="right"), size - 1)
        done = rows["outcome"] == COMPLETED
        self.arrived += np.bincount(where, minlength=size)
        self.completed += np.bincount(where[done], minlength=size)
        self.ttft_sum_s += np.bincount(where[done], (rows["first_token_s"] - arrival)[done], minlength=size)
        self.latency_sum_s += np.bincount(where[done], (rows["end_s"] - arrival)[done], minlength=size)


def _window_area(areas: np.ndarray, ticks: np.ndarray, warmup_s: float, duration_s: float,
                 cumulative: bool = False) -> np.ndarray:  # fmt: skip
    """Each level's integral over [warmup_s, duration_s] (both are ticks: engine._sample_times), from
    its integral per tick bin (or, `cumulative`, up to each tick)."""
    if not cumulative:
        areas = np.cumsum(areas[:, : ticks.size], axis=1)  # integral up to ticks[k]
    cumulative_area = areas
    end = cumulative_area[:, int(np.searchsorted(ticks, duration_s))]
    if warmup_s <= 0:
        return end
    return end - cumulative_area[:, int(np.searchsorted(ticks, warmup_s))]


def llm_summary(
    scenario: Scenario,
    seed: int,
    engine: EngineSettings,
    plane: LlmPlane,
    pool: LlmPool,
    tally: LlmTally,
    bins: RowBins,
    in_flight: int,
    end_s: float,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, list[tuple[float, float]]]]:
    """The replication's summary (JSON-clean), its time series and its replica-count changes."""
    window_s = scenario.duration_s - scenario.warmup_s
    ints = plane.ints
    ticks = plane.ticks
    area = _window_area(plane.areas, ticks, scenario.warmup_s, scenario.duration_s)
    levels = pool.levels
    counts = {name: series.area_at(ticks) for name, series in (("ready", levels.ready), ("billed", levels.billed),
                                                                ("starting", levels.starting),
                                                                ("desired", levels.desired))}  # fmt: skip
    window = _window_area(np.vstack(list(counts.values())), ticks, scenario.warmup_s, scenario.duration_s,
                          cumulative=True)  # fmt: skip
    ready_s, billed_s = float(window[0]), float(window[1])
    busy_s = float(area[L_BUSY])
    low, high = levels.ready.extremes_between(scenario.warmup_s, scenario.duration_s)
    cost = billed_cost(scenario.hardware.usd_per_hour, billed_s)
    usd = cost["usd"]
    slo = scenario.slo
    finished = tally.completed + tally.rejected
    slo_block: dict[str, Any] = {"latency_ms": None, "ttft_ms": None, "tpot_ms": None, "percentile": None,
                                 "attainment": None, "goodput_rps": None}  # fmt: skip
    if slo is not None:
        attainment = tally.within_slo / finished if finished else math.nan
        slo_block = {
            "latency_ms": slo.latency_ms if slo.has_latency_bound() else None,
            "ttft_ms": slo.ttft_ms,
            "tpot_ms": slo.tpot_ms,
            "percentile": slo.percentile,
            "attainment": attainment,
            "goodput_rps": tally.within_slo / window_s,
            "met": bool(finished and attainment >= slo.percentile / 100.0),
        }
    queries = int(ints[I_PREFIX_QUERIES])
    dists = tally.summaries()
    energy = replica_energy(scenario.hardware, billed_s, busy_s, window_s)
    if energy is not None:
        energy["joules_per_output_token"] = energy["joules"] / tally.output_tokens if tally.output_tokens else math.nan
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "seed": seed,
        "replications": 1,
        "simulated_s": scenario.duration_s,
        "measured_s": window_s,
        "requests": {"arrived": tally.arrived + in_flight, "completed": tally.completed, "rejected": tally.rejected,
                     "timed_out": 0, "in_flight": in_flight, "preempted": tally.preempted_requests},
        "throughput_rps": tally.completed / window_s,
        "latency_ms": dists["latency_ms"],
        "queue_wait_ms": dists["queue_wait_ms"],
        "ttft_ms": dists["ttft_ms"],
        "tpot_ms": dists["tpot_ms"],
        "itl_ms": itl_summary(plane.itl_counts, plane.itl_stats),
        "tokens": {"input_per_s": tally.input_tokens / window_s, "output_per_s": tally.output_tokens / window_s,
                   "input": tally.input_tokens, "output": tally.output_tokens},
        "batch_size": {"mean": area[L_RUNNING] / busy_s if busy_s else math.nan, "p50": None,
                       "max": int(ints[I_MAX_BATCH])},
        "utilization": busy_s / ready_s if ready_s else 0.0,
        "kv_cache": {
            "utilization_mean": area[L_USED_BLOCKS] / area[L_CAP_BLOCKS] if area[L_CAP_BLOCKS] else math.nan,
            "preemptions": int(ints[I_PREEMPTIONS]),
            "blocks_per_replica": engine.kv_cache_blocks,
            "block_size": engine.block_size,
            "prefix_hit_rate": int(ints[I_PREFIX_HITS]) / queries if queries else math.nan,
        },
        "replicas": {"mean": ready_s / window_s, "min": int(low), "max": int(high),
                     "billed_mean": billed_s / window_s, "cold_starts": pool.starter.cold_starts},
        "cost": {
            **cost,
            "usd_per_hour": usd / (window_s / 3600.0),
            "usd_per_million_requests": usd_per_million(usd, tally.completed),
            "usd_per_million_input_tokens": usd_per_million(usd, tally.input_tokens),
            "usd_per_million_output_tokens": usd_per_million(usd, tally.output_tokens),
        },
        "slo": slo_block,
        "levels": {"running_mean": area[L_RUNNING] / window_s, "waiting_mean": area[L_WAITING] / window_s,
                   "queue_length_mean": area[L_WAITING] / window_s,
                   "busy_replicas_mean": busy_s / window_s},
        "engine_settings": engine._asdict(),
        "steps": int(ints[I_STEPS]),
        "ended_s": end_s,
        "service": scenario.service.describe(),
        "warnings": [],
        "engine": "compiled",
        "ci95": {},
    }
    if energy is not None:
        summary["energy"] = energy
    changes = {name: list(zip(series.times_s, series.values, strict=True))
               for name, series in (("desired", levels.desired), ("starting", levels.starting),
                                    ("ready", levels.ready), ("billed", levels.billed))}  # fmt: skip
    return clean_json(summary), _timeseries(plane, bins, counts), changes


def _timeseries(plane: LlmPlane, bins: RowBins, counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ticks = plane.ticks
    widths = np.diff(np.concatenate([[0.0], ticks]))
    level = plane.areas[:, : ticks.size] / widths
    per_tick = {name: np.diff(np.concatenate([[0.0], area])) / widths for name, area in counts.items()}
    replicas = per_tick["ready"]
    with np.errstate(invalid="ignore", divide="ignore"):
        kv = np.where(level[L_CAP_BLOCKS] > 0, level[L_USED_BLOCKS] / level[L_CAP_BLOCKS], np.nan)
        ttft_ms = np.where(bins.completed > 0, bins.ttft_sum_s / np.maximum(bins.completed, 1) * 1000.0, np.nan)
        latency_ms = np.where(bins.completed > 0, bins.latency_sum_s / np.maximum(bins.completed, 1) * 1000.0, np.nan)
    return {
        "time_s": ticks,
        "running": level[L_RUNNING],
        "waiting": level[L_WAITING],
        "queue_length": level[L_WAITING],
        "in_service": level[L_RUNNING],
        "kv_utilization": kv,
        "busy_executors": level[L_BUSY],
        "utilization": np.divide(level[L_BUSY], replicas, out=np.zeros_like(replicas), where=replicas > 0),
        "replicas": replicas,
        "replicas_starting": per_tick["starting"],
        "replicas_desired": per_tick["desired"],
        "billed_replicas": per_tick["billed"],
        "serving_executors": replicas,
        "arrival_rps": bins.arrived / widths,
        "ttft_mean_ms": ttft_ms,
        "latency_mean_ms": latency_ms,
    }
