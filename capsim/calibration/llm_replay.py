"""Replaying a measured LLM load point in the simulator: the same sends, the same tokens, the same engine.

The replay is a `serving.mode: llm` scenario with one replica scheduled exactly as the measured
engine was (the point's `LlmScheduler`: sequence cap, token budget, chunked prefill, KV blocks,
block size, prefix caching, context), whose arrivals are the instants the load generator actually
sent each request (`sent_s`) and whose token counts are each request's own (a `trace` arrival file
with `input_tokens` / `output_tokens` columns, read by `workload.tokens: {kind: trace}`). Request
*i* of the simulation is row *i* of the measured step sorted by send time, so both sides are
summarized over the same requests.

The step time is the calibrated `llm_linear` form (`llm_fitted` evaluates the same; the replay
leaves out its fitted-on check, since the replay's hardware is nobody's). What lies outside the
engine — HTTP, the API server's parsing and tokenization, the network — is one constant
`overhead_ms` per request, added to its first and last token: a constant delay before the engine
shifts every arrival alike, so the engine's schedule is unchanged and TTFT and E2E move by it
exactly, while TPOT and ITL do not move. The engine here is deterministic (the step time has no
noise and the tokens are given), so one replication is the whole answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from capsim.calibration.llm_runfolder import LlmPoint
from capsim.calibration.replay import ReplayWorkspace
from capsim.engine import simulate
from capsim.scenario import Scenario
from capsim.servicetime.llm_service import LlmLinearService
from capsim.serving.llm.plane import COMPLETED

_TAIL_S = 1e-3  # the arrival window reaches a little past the last send (the engine drains after it)


@dataclass(frozen=True)
class LlmReplayModel:
    """What a replay needs besides the point: the step-time service (an `llm_linear` mapping) and
    the constant time outside the engine."""

    service: dict[str, Any]
    overhead_ms: float = 0.0


@dataclass
class SimulatedLlm:
    """Per-request results of replaying one point, on the run's clock (epoch seconds), and the
    simulator's summary (its `itl_ms`, `utilization`, `kv_cache`)."""

    sent_s: np.ndarray
    first_token_s: np.ndarray  # NaN when no token came
    end_s: np.ndarray  # NaN when not completed
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    completed: np.ndarray
    summary: dict[str, Any]


def replay_scenario(point: LlmPoint, service: dict[str, Any], workspace: ReplayWorkspace) -> tuple[Scenario, float]:
    """The scenario replaying `point` with `service`, and its time origin (the first send, epoch s)."""
    rows = point.point.requests
    sent_s = rows["sent_s"].to_numpy(dtype=float)
    origin_s = float(sent_s[0])
    inputs, outputs = point.token_counts()
    path = workspace.fresh(".parquet")
    pd.DataFrame({"time_s": sent_s - origin_s, "input_tokens": inputs.astype(np.int64),
                  "output_tokens": outputs.astype(np.int64)}).to_parquet(path, index=False)  # fmt: skip
    window_lo_s, window_hi_s = point.point.window_s
    warmup_s = max(window_lo_s - origin_s, 0.0)
    span_s = float(sent_s[-1] - origin_s)
    duration_s = max(window_hi_s - origin_s, span_s + _TAIL_S, warmup_s + _TAIL_S)
    data = {
        "name": f"replay {point.label}",
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "seed": 0,
        "workload": {
            "arrival": {"kind": "trace", "path": str(path), "time_column": "time_s", "time_unit": "s"},
            "tokens": {"input": {"kind": "trace", "column": "input_tokens"},
                       "output": {"kind": "trace", "column": "output_tokens"}},
        },
        "service": service,
        # The replay asks about time, not money: no price, no energy.
        "hardware": {"name": "replay", "usd_per_hour": 0.0},
        # One engine, up from the start: nothing to load (the fleet's cold start needs a model's
        # weights otherwise, and the replay has no model).
        "serving": {"mode": "llm", "replicas": 1,
                    "scheduler": point.scheduler.model_dump(exclude={"gpu_memory_utilization"}),
                    "cold_start": {"model_load_s": {"kind": "fixed", "value_s": 0.0}}},
    }  # fmt: skip
    return Scenario.model_validate(data), origin_s


def replay_llm(point: LlmPoint, model: LlmReplayModel, workspace: ReplayWorkspace,
               prepared: tuple[Scenario, float] | None = None) -> SimulatedLlm:  # fmt: skip
    """Simulate `point` with `model`; per-request results on the run's clock (module docstring).
    `prepared`: a `replay_scenario` of the point to reuse (a search replays one point many times;
    only the service changes)."""
    if prepared is None:
        scenario, origin_s = replay_scenario(point, model.service, workspace)
    else:
        base, origin_s = prepared
        scenario = base.model_copy(update={"service": LlmLinearService.model_validate(model.service)})
    result = simulate(scenario, replications=1)
    cols = result.replications[0].requests
    assert cols is not None  # keep_requests is on
    rows = point.point.requests
    sent_s = rows["sent_s"].to_numpy(dtype=float)
    slot = _rows_of(sent_s - origin_s, cols["arrival_s"])
    inputs, outputs = point.token_counts()
    overhead_s = model.overhead_ms / 1e3
    first_s = np.full(sent_s.size, np.nan)
    end_s = np.full(sent_s.size, np.nan)
    completed = np.zeros(sent_s.size, dtype=bool)
    done = cols["outcome"] == COMPLETED
    first_s[slot] = cols["first_token_s"] + origin_s + overhead_s
    end_s[slot] = np.where(done, cols["end_s"] + origin_s + overhead_s, np.nan)
    completed[slot] = done
    return SimulatedLlm(sent_s=sent_s, first_token_s=first_s, end_s=end_s, input_tokens=inputs,
                        output_tokens=outputs, completed=completed, summary=result.summary)  # fmt: skip


def _rows_of(offsets_s: np.ndarray, simulated_s: np.ndarray) -> np.ndarray:
    """The measured row of each simulated request (both in send order). A request the engine had not
    finished when the replay's horizon came (an engine far slower than the measured one, as a search
    may try) has no simulated row, so rows are matched by send instant, not by count; requests sent at
    the same instant take the rows of that instant in order."""
    slot = np.searchsorted(offsets_s, simulated_s, side="left")
    if slot.size and np.any(offsets_s[np.minimum(slot, offsets_s.size - 1)] != simulated_s):
        raise RuntimeError("replay: a simulated arrival matches no measured send")
    repeat = np.zeros(slot.size, dtype=np.int64)
    same = np.flatnonzero(np.diff(slot) == 0) + 1
    for i in same:  # sends at one instant (rare): the k-th of them takes the k-th row
        repeat[i] = repeat[i - 1] + 1
    return slot + repeat
