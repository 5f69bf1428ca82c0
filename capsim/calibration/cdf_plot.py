"""The validation chart: measured and simulated latency tails (CCDF) of each load point on one set
of axes, so that a p99 or p99.9 miss is as visible as a median one (axes as report/axes.py draws them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt
import numpy as np

from capsim.atomic import atomic_write
from capsim.report.axes import ccdf, latency_x_axis, tail_axes


def plot_latency_cdfs(latencies_ms: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """One colour per load point: measured solid, simulated dashed; share of requests slower than x
    on a log axis, latency on a log axis when it spans more than a decade."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors: Any = plt.get_cmap("tab10")
    every = [v for pair in latencies_ms.values() for v in pair if v.size]
    smallest = min((1.0 / v.size for v in every), default=1e-3)
    for i, (label, (measured, simulated)) in enumerate(latencies_ms.items()):
        color = colors(i % 10)
        if measured.size > 1:
            ax.step(*ccdf(measured), where="post", color=color, lw=1.6, label=f"{label} measured")
        if simulated.size > 1:
            ax.step(*ccdf(simulated), where="post", color=color, lw=1.4, ls="--", label=f"{label} simulated")
    latency_x_axis(ax, np.concatenate(every) if every else np.empty(0))
    ax.set_xlabel(ax.get_xlabel().replace("latency", "latency from the request's send"))
    tail_axes(ax, smallest)
    for share, name in ((0.5, "p50"), (0.01, "p99")):  # where the curves cross these are those percentiles
        ax.axhline(share, color="grey", lw=0.8, ls=":")
        ax.text(1.0, share, f" {name}", transform=ax.get_yaxis_transform(), va="center", fontsize=7, color="grey")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
