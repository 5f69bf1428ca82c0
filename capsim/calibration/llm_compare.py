"""Measured against simulated for one LLM load point, with relative errors, and their aggregation.

Both sides are summarized by the same function (`llm_stats`) over the same requests — the point's
rows whose intended send falls in the measured interval, paired by send order with the replay's
requests (llm_replay.py) — with the metrics as vLLM's `bench serve` defines them
(capsim/loadtest/llm_summary.py, docs/model.md "LLM serving"):

- TTFT = first token − send; E2E = last token − send (both from the *actual* send on both sides:
  the replay's arrivals are the actual sends);
- TPOT = (E2E − TTFT) / (output − 1) per completed request with more than one output token;
- ITL = every gap between consecutive tokens. Measured: the gaps the client saw (per content chunk),
  pooled over the measured requests; simulated: the engine's ITL histogram over the requests sent
  after the warm-up (`itl_ms` of the replay's summary, percentiles within 0.5%);
- throughput = completions inside the measured interval per second, and tokens/s = their prompt and
  output tokens per second (a completion outside the interval does not count: a replay that is too
  slow shows it here, as the real-time validation's throughput does).

Relative error = (simulated − measured) / measured. `aggregate_llm_errors` takes the worst absolute
error per metric over the points and judges it against issue 16's targets (TTFT p50 10%, p99 20%;
TPOT and E2E p50 5%, p99 15%; throughput 3%).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from capsim.calibration.llm_replay import SimulatedLlm
from capsim.calibration.llm_runfolder import LlmPoint
from capsim.loadtest.records import outcome

PERCENTILES = ("p10", "p25", "p50", "p75", "p90", "p99")
DISTRIBUTIONS = ("ttft_ms", "tpot_ms", "itl_ms", "latency_ms")
TARGETS = {"ttft_ms.p50": 0.10, "ttft_ms.p99": 0.20, "tpot_ms.p50": 0.05, "tpot_ms.p99": 0.15,
           "latency_ms.p50": 0.05, "latency_ms.p99": 0.15, "throughput_rps": 0.03}  # fmt: skip


def _dist(values_ms: np.ndarray) -> dict[str, float | None]:
    finite = values_ms[np.isfinite(values_ms)]
    if not finite.size:
        return {"mean": None, **dict.fromkeys(PERCENTILES)}
    return {"mean": float(finite.mean()), **{p: float(np.percentile(finite, float(p[1:]))) for p in PERCENTILES}}


def llm_stats(sent_s: np.ndarray, first_token_s: np.ndarray, end_s: np.ndarray, inputs: np.ndarray,
              outputs: np.ndarray, completed: np.ndarray, measured: np.ndarray, window_s: tuple[float, float],
              itl_ms: dict[str, float | None]) -> dict[str, Any]:  # fmt: skip
    """The statistics of one side (module docstring); `measured` marks the requests summarized,
    `completed` those that finished, `itl_ms` the side's ITL distribution."""
    good = measured & completed
    ttft_ms = (first_token_s - sent_s) * 1e3
    e2e_ms = (end_s - sent_s) * 1e3
    many = good & (outputs > 1)
    tpot_ms = (e2e_ms[many] - ttft_ms[many]) / (outputs[many] - 1)
    lo, hi = window_s
    inside = completed & (end_s >= lo) & (end_s < hi)
    span_s = hi - lo
    return {
        "requests": int(measured.sum()), "completed": int(good.sum()),
        "ttft_ms": _dist(ttft_ms[good]), "tpot_ms": _dist(tpot_ms), "itl_ms": itl_ms, "latency_ms": _dist(e2e_ms[good]),
        "throughput_rps": float(inside.sum()) / span_s,
        "tokens": {"input_per_s": float(inputs[inside].sum()) / span_s,
                   "output_per_s": float(outputs[inside].sum()) / span_s},
    }  # fmt: skip


def measured_llm_stats(point: LlmPoint) -> dict[str, Any]:
    """The measured side of `point`."""
    rows = point.point.requests
    sent_s = rows["sent_s"].to_numpy(dtype=float)
    errors = rows["error"].to_numpy(dtype=object) if "error" in rows else np.full(len(rows), None)
    completed = np.array([outcome(int(s), None if pd.isna(e) else e) == "completed"
                          for s, e in zip(rows["status"], errors, strict=True)], dtype=bool)  # fmt: skip
    first_s = sent_s + rows["ttft_ms"].to_numpy(dtype=float) / 1e3
    end_s = np.where(completed, sent_s + rows["latency_ms"].to_numpy(dtype=float) / 1e3, np.nan)
    measured = point.point.measured_mask()
    gaps = [np.asarray(g, dtype=float) for g, keep in zip(rows["itl_ms"], measured & completed, strict=True)
            if keep and g is not None and len(g)]  # fmt: skip
    itl = _dist(np.concatenate(gaps)) if gaps else _dist(np.empty(0))
    inputs, outputs = point.token_counts()
    return llm_stats(sent_s, first_s, end_s, inputs, outputs, completed, measured, point.point.window_s, itl)


def simulated_llm_stats(point: LlmPoint, sim: SimulatedLlm) -> dict[str, Any]:
    """The simulated side of `point` from its replay."""
    summary_itl = sim.summary.get("itl_ms") or {}
    itl = {"mean": summary_itl.get("mean"), **{p: summary_itl.get(p) for p in PERCENTILES}}
    stats = llm_stats(sim.sent_s, sim.first_token_s, sim.end_s, sim.input_tokens, sim.output_tokens, sim.completed,
                      point.point.measured_mask(), point.point.window_s, itl)  # fmt: skip
    stats["utilization"] = sim.summary.get("utilization")
    stats["kv_cache"] = sim.summary.get("kv_cache")
    return stats


def _relative(measured: Any, simulated: Any) -> float | None:
    if not isinstance(measured, int | float) or not isinstance(simulated, int | float) or not measured:
        return None
    return (float(simulated) - float(measured)) / float(measured)


def compare_llm_point(point: LlmPoint, sim: SimulatedLlm) -> dict[str, Any]:
    """One row: the point's label, load and configuration, both sides and their relative errors."""
    m, s = measured_llm_stats(point), simulated_llm_stats(point, sim)
    errors: dict[str, float | None] = {}
    for name in DISTRIBUTIONS:
        for key in ("mean", *PERCENTILES):
            errors[f"{name}.{key}"] = _relative(m[name][key], s[name][key])
    errors["throughput_rps"] = _relative(m["throughput_rps"], s["throughput_rps"])
    for side in ("input_per_s", "output_per_s"):
        errors[f"tokens.{side}"] = _relative(m["tokens"][side], s["tokens"][side])
    return {"label": point.label, "run_dir": str(point.point.run_dir), "step": point.point.step,
            "rate_rps": point.point.rate_rps, "server": point.config_key, "valid": point.point.valid,
            "utilization": s.get("utilization"), "measured": m, "simulated": s, "relative_error": errors}  # fmt: skip


def aggregate_llm_errors(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and worst absolute relative error per target metric over `rows`, and whether the worst
    meets issue 16's target (None without a value)."""
    out: dict[str, Any] = {"points": len(rows), "targets": TARGETS, "targets_met": {}}
    for key, limit in TARGETS.items():
        errors = [abs(r["relative_error"][key]) for r in rows if r["relative_error"].get(key) is not None]
        worst = float(np.max(errors)) if errors else None
        out[key] = {"mean_abs": float(np.mean(errors)) if errors else None, "max_abs": worst}
        out["targets_met"][key] = None if worst is None else bool(worst <= limit)
    return out


def llm_error_line(agg: dict[str, Any]) -> str:
    """One line: the worst absolute errors over the points."""
    bits = []
    for key in TARGETS:
        worst = agg[key]["max_abs"]
        bits.append(f"{key.replace('_ms', '').replace('_rps', '')} {'–' if worst is None else f'{100 * worst:.1f}%'}")
    return f"worst |error| ({agg['points']} point(s)): " + ", ".join(bits)
