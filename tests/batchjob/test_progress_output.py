"""Job progress over time (the time series and the run folder under --out)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from capsim import simulate
from capsim.serving.batchjob.job import as_changes, step_at, step_means
from tests.batchjob.helpers import batch_dict, batch_scenario


def test_step_series_samples_and_interval_means() -> None:
    changes = as_changes([(1.0, 1), (3.0, -1), (3.5, 2)])
    times = np.array([0.0, 2.0, 4.0, 6.0])
    assert step_at(changes, times).tolist() == [0.0, 1.0, 2.0, 2.0]
    # (0, 2]: half at 1; (2, 4]: 1 for 1 s, 0 for 0.5 s, 2 for 0.5 s; (4, 6]: 2.
    assert step_means(changes, times).tolist() == [0.0, 0.5, 1.0, 2.0]


def test_series_integrate_to_the_summary_figures() -> None:
    scenario = batch_scenario(workers=3, job_startup_s=5, dataset={"items": 1000, "partitions": 7, "item_bytes": 1e6},
                              read_mb_per_s=200.0, checkpoint={"every_batches": 2, "write_s": 0.25})  # fmt: skip
    result = simulate(scenario)
    series, summary = result.replications[0].timeseries, result.summary
    widths = np.diff(series["time_s"])
    busy_s = float(np.sum(series["workers_busy"][1:] * widths))
    billed_s = float(np.sum(series["workers_billed"][1:] * widths))
    assert busy_s == pytest.approx(summary["worker_s"]["compute"], rel=1e-9)
    assert billed_s == pytest.approx(summary["worker_s"]["billed"], rel=1e-9)
    assert series["items_done"][-1] == 1000 and series["time_s"][-1] == summary["makespan_s"]


def test_out_writes_summary_series_and_progress_plot(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(batch_dict(workers=2, deadline_s=50.0)))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "capsim.cli.main", "simulate", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "makespan" in proc.stdout and "deadline" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "capsim-output.json", "job_progress.png", "scenario.json", "summary.json", "timeseries.parquet"]  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "batch" and summary["makespan_s"] == pytest.approx(5.0)
    frame = pd.read_parquet(out / "timeseries.parquet")
    assert {"time_s", "items_done", "workers_busy", "workers_billed"} <= set(frame.columns)
    assert (out / "job_progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
