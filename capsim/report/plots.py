"""PNG plots of a simulation: latency CDF with the SLO marked; queue length and utilization over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from capsim.atomic import atomic_write


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def latency_cdf(requests: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float) -> None:
    """Empirical CDF of end-to-end latency of completed requests, with the SLO target marked."""
    done = requests[(requests["outcome"] == "completed") & (requests["arrival_s"] >= warmup_s)]
    latency_ms = np.sort((done["end_s"] - done["arrival_s"]).to_numpy() * 1000.0)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if latency_ms.size:
        ax.plot(latency_ms, np.arange(1, latency_ms.size + 1) / latency_ms.size, lw=1.6, label="simulated")
        ax.set_xscale("log")
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
    for ax in (top, bottom):
        if warmup_s > 0:
            ax.axvspan(0, warmup_s, color="grey", alpha=0.15, lw=0)
        ax.grid(alpha=0.3)
    top.set_title(f"{summary['scenario']}: queue and utilization (warm-up shaded)")
    _save(fig, path)
