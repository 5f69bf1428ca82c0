"""PNG plots of the pull-based modes: consumer lag (streaming) or queue depth (async) over time,
against the arrival rate and the consumers or workers serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from capsim.report.plots import _save, finish_time_axes, first_replication, plt, replica_steps, run_time_axis

_LABELS = {
    "streaming": ("lag", "consumer lag (records)", "events / s", "consumers", "consumer lag"),
    "async": ("queue_length", "queue depth (jobs)", "jobs / s", "workers", "queue depth"),
}


def backlog_over_time(timeseries: pd.DataFrame, summary: dict[str, Any], path: Path, warmup_s: float,
                      clock_start_h: float | None = None) -> None:
    """Arrivals, backlog (lag or queue depth, time-averaged per interval) and members over time
    (first replication), warm-up shaded."""
    _save(backlog_figure(timeseries, summary, warmup_s, clock_start_h), path)


def backlog_figure(timeseries: pd.DataFrame, summary: dict[str, Any], warmup_s: float,
                   clock_start_h: float | None = None) -> Any:
    """The figure `backlog_over_time` writes."""
    column, backlog_label, rate_label, member_label, title = _LABELS[summary["mode"]]
    first = first_replication(timeseries)
    axis, span_s = run_time_axis(timeseries, summary, clock_start_h)
    x = axis.values(first["time_s"])
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 7.0), sharex=True)
    top.plot(x, first["arrival_rps"], lw=1.0, color="steelblue")
    top.set_ylabel(rate_label)
    middle.plot(x, first[column], lw=1.0, color="crimson")
    middle.set_ylabel(backlog_label)
    replica_steps(bottom, x, first)
    bottom.set_ylabel(member_label)
    finish_time_axes((top, middle, bottom), axis, span_s, warmup_s)
    top.set_title(f"{summary['scenario']}: arrivals, {title} and {member_label} over time")
    return fig
