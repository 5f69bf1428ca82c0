"""The PNG plot of a batch job (first replication): items done over time against the deadline, and
workers computing against workers billed — where a job waits on start-up, reads or stragglers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt
import pandas as pd

from capsim.atomic import atomic_write


def job_progress(timeseries: pd.DataFrame, summary: dict[str, Any], path: Path) -> None:
    """Items done over time (deadline marked) above workers busy and billed over time."""
    first = timeseries[timeseries["replication"] == timeseries["replication"].min()]
    hours = first["time_s"] / 3600.0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True)
    top.step(hours, first["items_done"], where="post", lw=1.6, label="items done")
    top.axhline(summary["items"]["total"], color="grey", ls=":", lw=1.0, label="dataset")
    deadline_s = summary.get("deadline_s")
    if deadline_s is not None:
        for ax in (top, bottom):
            ax.axvline(deadline_s / 3600.0, color="crimson", ls="--", lw=1.2)
        top.plot([], [], color="crimson", ls="--", label=f"deadline {deadline_s / 3600.0:g} h")
    top.set_ylabel("items committed")
    top.legend(loc="lower right", fontsize=8)
    bottom.step(hours, first["workers_billed"], where="post", lw=1.2, label="workers billed")
    bottom.step(hours, first["workers_busy"], where="post", lw=1.0, label="workers computing")
    bottom.set_ylabel("workers")
    bottom.set_xlabel("time since submission (h)")
    bottom.legend(loc="upper right", fontsize=8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.set_title(f"{summary['scenario']}: job progress")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
