"""The validation chart: measured and simulated latency CDFs of each load point on one set of axes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from capsim.atomic import atomic_write


def _ecdf(values_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ordered = np.sort(values_ms)
    return ordered, np.arange(1, ordered.size + 1) / max(ordered.size, 1)


def plot_latency_cdfs(latencies_ms: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """One colour per load point: measured solid, simulated dashed; log latency axis."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors: Any = plt.get_cmap("tab10")
    for i, (label, (measured, simulated)) in enumerate(latencies_ms.items()):
        color = colors(i % 10)
        if measured.size:
            ax.plot(*_ecdf(measured), color=color, lw=1.6, label=f"{label} measured")
        if simulated.size:
            ax.plot(*_ecdf(simulated), color=color, lw=1.4, ls="--", label=f"{label} simulated")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    for level in (0.5, 0.99):
        ax.axhline(level, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("latency (ms, from the request's send)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
