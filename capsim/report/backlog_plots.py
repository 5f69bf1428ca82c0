"""PNG plots of the pull-based modes: consumer lag (streaming) or queue depth (async) over time,
against the arrival rate and the consumers or workers serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from capsim.report.plots import _save, _shade_warmup_and_grid, plt

_LABELS = {
    "streaming": ("lag", "consumer lag (records)", "events / s", "consumers", "consumer lag"),
    "async": ("queue_length", "queue depth (jobs)", "jobs / s", "workers", "queue depth"),
}


def backlog_over_time(timeseries: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float) -> None:
    """Arrivals, backlog (lag or queue depth, time-averaged per interval) and members over time
    (first replication), warm-up shaded."""
    column, backlog_label, rate_label, member_label, title = _LABELS[summary["mode"]]
    first = timeseries[timeseries["replication"] == timeseries["replication"].min()]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 7.0), sharex=True)
    top.plot(first["time_s"], first["arrival_rps"], lw=1.0, color="steelblue")
    top.set_ylabel(rate_label)
    middle.plot(first["time_s"], first[column], lw=1.0, color="crimson")
    middle.set_ylabel(backlog_label)
    bottom.step(first["time_s"], first["replicas_desired"], where="post", lw=1.2, label="desired")
    bottom.step(first["time_s"], first["replicas_starting"], where="post", lw=1.0, label="starting (cold start)")
    bottom.step(first["time_s"], first["replicas"], where="post", lw=1.6, label="ready")
    bottom.set_ylabel(member_label)
    bottom.set_xlabel("simulated time (s)")
    bottom.legend(loc="upper left", fontsize=8)
    _shade_warmup_and_grid((top, middle, bottom), warmup_s)
    top.set_title(f"{summary['scenario']}: arrivals, {title} and {member_label} over time")
    _save(fig, path)
