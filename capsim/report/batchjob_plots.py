"""The PNG plot of a batch job (first replication): items done over time against the deadline, and
workers computing against workers billed — where a job waits on start-up, reads or stragglers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from capsim.report.axes import count_axis, time_axis
from capsim.report.plots import _save, first_replication, plt


def job_progress(timeseries: pd.DataFrame, summary: dict[str, Any], path: Path) -> None:
    """Items done over time (deadline marked) above workers busy and billed over time."""
    _save(job_progress_figure(timeseries, summary), path)


def job_progress_figure(timeseries: pd.DataFrame, summary: dict[str, Any]) -> Any:
    """The figure `job_progress` writes."""
    first = first_replication(timeseries)
    deadline_s = summary.get("deadline_s")
    # past the deadline, so that its line is not hidden in the frame
    span_s = max(float(first["time_s"].max() or 1.0), 1.05 * float(deadline_s or 0.0))
    axis = time_axis(span_s, since="submission")
    x = axis.values(first["time_s"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True)
    top.step(x, first["items_done"], where="post", lw=1.6, label="items done")
    top.axhline(summary["items"]["total"], color="grey", ls=":", lw=1.0, label="dataset")
    if deadline_s is not None:
        for ax in (top, bottom):
            ax.axvline(float(axis.values(deadline_s)), color="crimson", ls="--", lw=1.2)
        top.plot([], [], color="crimson", ls="--", label=f"deadline {deadline_s / 3600.0:g} h")
    top.set_ylabel("items committed")
    count_axis(top.yaxis)
    top.legend(loc="lower right", fontsize=8)
    bottom.step(x, first["workers_billed"], where="post", lw=1.2, label="workers billed")
    bottom.step(x, first["workers_busy"], where="post", lw=1.0, label="workers computing")
    bottom.set_ylabel("workers")
    bottom.set_ylim(0, 1.15 * max(float(first["workers_billed"].max() or 1.0), 1.0))  # the top line clear of the frame
    bottom.legend(loc="upper right", fontsize=8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    axis.apply(bottom, span_s)
    top.set_title(f"{summary['scenario']}: job progress")
    return fig
