"""PNG plots of an LLM run (`serving.mode: llm`): the tails of time to first token and time per
output token with their SLO bounds, and the engines over time — traffic and TTFT, requests running
and waiting, KV-cache utilization, and replicas. Axes follow report/axes.py (hours of the day for a
day-long run, the SLO named with its percentile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from capsim.report.axes import readable_log_axis, slo_label
from capsim.report.plots import (
    _save,
    ccdf_panel,
    finish_time_axes,
    first_replication,
    plt,
    replica_steps,
    run_time_axis,
)


def ttft_tpot_ms(requests: pd.DataFrame, warmup_s: float) -> tuple[np.ndarray, np.ndarray]:
    """TTFT (arrival → first token) of the completed requests that arrived after the warm-up, and the
    TPOT of those with more than one output token: (E2E − TTFT) / (output − 1), as vLLM's
    `bench serve` defines it (docs/model.md "LLM metrics"), both in ms."""
    done = requests[(requests["outcome"] == "completed") & (requests["arrival_s"] >= warmup_s)]
    ttft_s = (done["first_token_s"] - done["arrival_s"]).to_numpy(dtype=float)
    output = done["output_tokens"].to_numpy(dtype=float)
    several = output > 1
    decode_s = (done["end_s"] - done["first_token_s"]).to_numpy(dtype=float)[several]
    return ttft_s * 1000.0, decode_s / (output[several] - 1.0) * 1000.0


def llm_tails(requests: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float) -> None:
    """TTFT and TPOT tails (CCDFs, log scales) side by side, each with its SLO bound marked."""
    _save(llm_tails_figure(requests, summary, warmup_s), path)


def llm_tails_figure(requests: pd.DataFrame, summary: dict[str, Any], warmup_s: float) -> Any:
    """The figure `llm_tails` writes."""
    ttft, tpot = ttft_tpot_ms(requests, warmup_s)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    slo = summary.get("slo")
    ccdf_panel(left, {"simulated": ttft}, slo, "ttft_ms", "TTFT", "time to first token")
    ccdf_panel(right, {"simulated": tpot}, slo, "tpot_ms", "TPOT", "time per output token")
    right.set_ylabel("")
    left.set_title("time to first token (arrival → first token)")
    right.set_title("time per output token (E2E − TTFT) / (output − 1)")
    fig.suptitle(f"{summary['scenario']}: TTFT and TPOT tails (1 − CDF)")
    return fig


def llm_over_time(
    timeseries: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float, clock_start_h: float | None = None
) -> None:
    """Traffic and TTFT, requests running and waiting, KV utilization and replicas over time (first
    replication), warm-up shaded."""
    _save(llm_over_time_figure(timeseries, summary, warmup_s, clock_start_h), path)


def llm_over_time_figure(
    timeseries: pd.DataFrame, summary: dict[str, Any], warmup_s: float, clock_start_h: float | None = None
) -> Any:
    """The figure `llm_over_time` writes: four panels sharing the time axis."""
    first = first_replication(timeseries)
    axis, span_s = run_time_axis(timeseries, summary, clock_start_h)
    x = axis.values(first["time_s"])
    fig, (traffic, queue, kv, fleet) = plt.subplots(4, 1, figsize=(8, 9.0), sharex=True)
    traffic.plot(x, first["arrival_rps"], lw=1.0, color="steelblue", label="arrivals (req/s)")
    traffic.set_ylabel("requests / s")
    ttft = traffic.twinx()
    ttft_ms = first["ttft_mean_ms"].to_numpy(dtype=float)
    ttft.plot(x, ttft_ms, lw=1.0, color="crimson", label="mean TTFT per interval (ms)")
    ttft.set_ylabel("mean TTFT (ms, log)", color="crimson")
    if np.any(np.isfinite(ttft_ms) & (ttft_ms > 0)):
        ttft.set_yscale("log")
        readable_log_axis(ttft.yaxis)
    label = slo_label(summary.get("slo"), "ttft_ms", "TTFT")
    if label is not None:
        ttft.axhline(summary["slo"]["ttft_ms"], color="crimson", ls=":", lw=1.0, label=label)
    handles = [*traffic.get_legend_handles_labels()[0], *ttft.get_legend_handles_labels()[0]]
    traffic.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=8, frameon=False)
    queue.plot(x, first["running"], lw=1.0, color="darkgreen", label="running")
    queue.plot(x, first["waiting"], lw=1.0, color="darkorange", label="waiting (new and preempted)")
    queue.set_ylabel("requests (fleet)")
    queue.legend(loc="upper left", fontsize=8)
    kv.plot(x, 100.0 * first["kv_utilization"], lw=1.0, color="purple")
    kv.set_ylabel("KV cache used (%)")
    kv.set_ylim(0, 105)
    if "replicas_desired" in first:
        replica_steps(fleet, x, first)
    else:
        fleet.step(x, first["replicas"], where="post", lw=1.6, label="ready")
        fleet.legend(loc="upper left", fontsize=8)
    fleet.set_ylabel("replicas")
    fleet.set_ylim(bottom=0)
    finish_time_axes((traffic, queue, kv, fleet), axis, span_s, warmup_s)
    traffic.set_title(f"{summary['scenario']}: traffic, TTFT, engines and replicas over time", pad=22)
    return fig
