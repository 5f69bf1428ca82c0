"""PNG plots of a simulation: latency CDF with the SLO marked; queue length and utilization over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from capsim.atomic import atomic_write


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def _shade_warmup_and_grid(axes: tuple[Any, ...], warmup_s: float) -> None:
    for ax in axes:
        if warmup_s > 0:
            ax.axvspan(0, warmup_s, color="grey", alpha=0.15, lw=0)
        ax.grid(alpha=0.3)


def latency_cdf(requests: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float) -> None:
    """Empirical CDF of end-to-end latency of completed requests, with the SLO target marked."""
    done = requests[(requests["outcome"] == "completed") & (requests["arrival_s"] >= warmup_s)]
    latency_ms = np.sort((done["end_s"] - done["arrival_s"]).to_numpy() * 1000.0)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if latency_ms.size:
        ax.plot(latency_ms, np.arange(1, latency_ms.size + 1) / latency_ms.size, lw=1.6, label="simulated")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    slo = summary.get("slo") or {}
    if slo.get("latency_ms"):
        ax.axvline(slo["latency_ms"], color="crimson", ls="--", lw=1.2, label=f"SLO {slo['latency_ms']:g} ms")
        ax.axhline(slo["percentile"] / 100.0, color="crimson", ls=":", lw=1.0)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_ylim(0, 1.0)
    ax.set_title(f"{summary['scenario']}: latency CDF")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    _save(fig, path)


def levels_over_time(timeseries: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float) -> None:
    """Queue length and executor utilization over time (first replication), warm-up shaded."""
    first = timeseries[timeseries["replication"] == timeseries["replication"].min()]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.2), sharex=True)
    top.plot(first["time_s"], first["queue_length"], lw=1.0)
    top.set_ylabel("queued requests")
    bottom.plot(first["time_s"], first["utilization"], lw=1.0, color="darkorange")
    bottom.set_ylabel("utilization")
    bottom.set_ylim(0, 1.05)
    bottom.set_xlabel("simulated time (s)")
    _shade_warmup_and_grid((top, bottom), warmup_s)
    top.set_title(f"{summary['scenario']}: queue and utilization (warm-up shaded)")
    _save(fig, path)


def fleet_over_time(timeseries: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float) -> None:
    """Traffic and latency against replicas (desired, starting, ready) over time (first replication):
    the picture of an autoscaler lagging a load change."""
    first = timeseries[timeseries["replication"] == timeseries["replication"].min()]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True)
    top.plot(first["time_s"], first["arrival_rps"], lw=1.0, color="steelblue", label="arrivals (req/s)")
    top.set_ylabel("requests / s")
    latency = top.twinx()
    latency.plot(first["time_s"], first["latency_mean_ms"], lw=1.0, color="crimson", label="mean latency (ms)")
    latency.set_ylabel("mean latency (ms, log)", color="crimson")
    latency.set_yscale("log")
    slo = summary.get("slo") or {}
    if slo.get("latency_ms"):
        latency.axhline(slo["latency_ms"], color="crimson", ls=":", lw=1.0)
    bottom.step(first["time_s"], first["replicas_desired"], where="post", lw=1.2, label="desired")
    bottom.step(first["time_s"], first["replicas_starting"], where="post", lw=1.0, label="starting (cold start)")
    bottom.step(first["time_s"], first["replicas"], where="post", lw=1.6, label="ready")
    bottom.set_ylabel("replicas")
    bottom.set_xlabel("simulated time (s)")
    bottom.legend(loc="upper left", fontsize=8)
    _shade_warmup_and_grid((top, bottom), warmup_s)
    top.set_title(f"{summary['scenario']}: traffic, latency and replicas over time")
    _save(fig, path)
