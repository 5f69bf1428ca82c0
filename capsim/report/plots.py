"""PNG plots of a simulation: the latency tail (CCDF) with the SLO marked; queue length and
utilization over time; traffic, latency and replicas over time. Axes follow report/axes.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from capsim.atomic import atomic_write
from capsim.report.axes import (
    TimeAxis,
    ccdf,
    latency_axis,
    readable_log_axis,
    slo_label,
    tail_axes,
    time_axis,
)


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def first_replication(timeseries: pd.DataFrame) -> pd.DataFrame:
    """The rows of the first replication (time series are drawn for one run, not averaged)."""
    return timeseries[timeseries["replication"] == timeseries["replication"].min()]


def run_time_axis(timeseries: pd.DataFrame, summary: dict[str, Any], clock_start_h: float | None,
                  since: str = "start") -> tuple[TimeAxis, float]:
    """The x axis of a run's time series (report/axes.py) and the span it covers (seconds)."""
    span_s = float(summary.get("simulated_s") or timeseries["time_s"].max() or 1.0)
    return time_axis(span_s, clock_start_h, since), span_s


def finish_time_axes(axes: tuple[Any, ...], axis: TimeAxis, span_s: float, warmup_s: float) -> None:
    """Warm-up shaded, grid on, and the time axis on the bottom plot (the others share it)."""
    for ax in axes:
        if warmup_s > 0:
            ax.axvspan(float(axis.values(0.0)), float(axis.values(warmup_s)), color="grey", alpha=0.15, lw=0)
        ax.grid(alpha=0.3)
    axis.apply(axes[-1], span_s)


def measured_latency_ms(requests: pd.DataFrame, warmup_s: float) -> Any:
    """End-to-end latency (ms) of the completed requests that arrived after the warm-up."""
    done = requests[(requests["outcome"] == "completed") & (requests["arrival_s"] >= warmup_s)]
    return (done["end_s"] - done["arrival_s"]).to_numpy() * 1000.0


def latency_cdf(requests: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float) -> None:
    """The tail of end-to-end latency of completed requests as a CCDF (share slower than x, log
    scale), with the SLO marked: met when the curve passes below its corner."""
    title = f"{summary['scenario']}: latency tail (1 − CDF)"
    _save(latency_ccdf_figure({"simulated": measured_latency_ms(requests, warmup_s)}, summary.get("slo"), title), path)


def latency_ccdf_figure(latencies_ms: dict[str, Any], slo: dict[str, Any] | None, title: str) -> Any:
    """The latency tails of one or more runs (label → latencies in ms) as CCDFs on one chart, with
    the SLO's corner marked (its latency, and the share allowed slower at its percentile)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ccdf_panel(ax, latencies_ms, slo)
    ax.set_title(title)
    return fig


def ccdf_panel(ax: Any, values_ms: dict[str, Any], slo: dict[str, Any] | None, key: str = "latency_ms",
               metric: str = "", name: str = "latency") -> None:
    """CCDFs of one or more runs (label → durations in ms) on `ax`, with the SLO's corner marked:
    the bound `slo[key]` and the share allowed slower at its percentile. `metric` and `name` label
    another bound than end-to-end latency (an LLM run's TTFT or TPOT)."""
    every = [values for values in values_ms.values() if values.size]
    for label, values in values_ms.items():
        if values.size > 1:
            x, share = ccdf(values)
            ax.step(x, share, where="post", lw=1.6, label=label)
    shown = np.concatenate(every) if every else np.empty(0)
    latency_axis(ax, shown, "x", name)
    tail_axes(ax, 1.0 / max(max((v.size for v in every), default=1), 1))
    slo = slo or {}
    bound = slo_label(slo, key, metric)
    if bound is not None:
        allowed = 1.0 - float(slo["percentile"]) / 100.0
        ax.axvline(slo[key], color="crimson", ls="--", lw=1.2, label=bound)
        ax.axhline(allowed, color="crimson", ls=":", lw=1.0, label=f"share allowed slower: {100 * allowed:.4g}%")
        ax.plot([slo[key]], [allowed], marker="o", color="crimson", ms=5)
    ax.grid(alpha=0.3, which="major")
    ax.legend(loc="upper right", fontsize=8)


def levels_over_time(timeseries: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float,
                     clock_start_h: float | None = None) -> None:
    """Queue length and executor utilization over time (first replication), warm-up shaded."""
    _save(levels_figure(timeseries, summary, warmup_s, clock_start_h), path)


def levels_figure(timeseries: pd.DataFrame, summary: dict[str, Any], warmup_s: float,
                  clock_start_h: float | None = None) -> Any:
    """The figure `levels_over_time` writes."""
    first = first_replication(timeseries)
    axis, span_s = run_time_axis(timeseries, summary, clock_start_h)
    x = axis.values(first["time_s"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.2), sharex=True)
    top.plot(x, first["queue_length"], lw=1.0)
    top.set_ylabel("queued requests")
    bottom.plot(x, first["utilization"], lw=1.0, color="darkorange")
    bottom.set_ylabel("utilization")
    bottom.set_ylim(0, 1.05)
    finish_time_axes((top, bottom), axis, span_s, warmup_s)
    top.set_title(f"{summary['scenario']}: queue and utilization (warm-up shaded)")
    return fig


def replica_steps(ax: Any, x: Any, first: pd.DataFrame) -> None:
    """Desired, starting and ready replicas (or consumers, workers) as steps, with a legend."""
    ax.step(x, first["replicas_desired"], where="post", lw=1.2, label="desired")
    ax.step(x, first["replicas_starting"], where="post", lw=1.0, label="starting (cold start)")
    ax.step(x, first["replicas"], where="post", lw=1.6, label="ready")
    ax.legend(loc="upper left", fontsize=8)


def fleet_over_time(timeseries: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float,
                    clock_start_h: float | None = None) -> None:
    """Traffic and latency against replicas (desired, starting, ready) over time (first replication):
    the picture of an autoscaler lagging a load change."""
    _save(fleet_figure(timeseries, summary, warmup_s, clock_start_h), path)


def fleet_figure(timeseries: pd.DataFrame, summary: dict[str, Any], warmup_s: float,
                 clock_start_h: float | None = None) -> Any:
    """The figure `fleet_over_time` writes."""
    first = first_replication(timeseries)
    axis, span_s = run_time_axis(timeseries, summary, clock_start_h)
    x = axis.values(first["time_s"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True)
    top.plot(x, first["arrival_rps"], lw=1.0, color="steelblue", label="arrivals (req/s)")
    top.set_ylabel("requests / s")
    latency = top.twinx()
    latency.plot(x, first["latency_mean_ms"], lw=1.0, color="crimson", label="mean latency per interval (ms)")
    latency.set_ylabel("mean latency (ms, log)", color="crimson")
    latency.set_yscale("log")
    readable_log_axis(latency.yaxis)
    label = slo_label(summary.get("slo"))
    if label is not None:
        latency.axhline(summary["slo"]["latency_ms"], color="crimson", ls=":", lw=1.0, label=label)
    handles = [*top.get_legend_handles_labels()[0], *latency.get_legend_handles_labels()[0]]
    # above the axes, in one row: inside, it covers the traffic wherever the peak falls
    top.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=8, frameon=False)
    replica_steps(bottom, x, first)
    bottom.set_ylabel("replicas")
    finish_time_axes((top, bottom), axis, span_s, warmup_s)
    top.set_title(f"{summary['scenario']}: traffic, latency and replicas over time", pad=22)
    return fig
