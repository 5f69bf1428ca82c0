"""Writing a simulation's results to a folder: summary.json, scenario.json (the scenario as it ran:
overrides applied, catalogue filled in), requests.parquet, timeseries.parquet and PNG plots. Every
file is written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from capsim.atomic import atomic_write, atomic_write_json
from capsim.engine import RunResult
from capsim.metrics.request_log import OUTCOME_NAMES
from capsim.report.plots import fleet_over_time, latency_cdf, levels_over_time
from capsim.scenario import Scenario

SCENARIO_FILE = "scenario.json"


def requests_table(result: RunResult) -> pd.DataFrame:
    """Per-request rows with readable outcomes and latency in ms."""
    frame = result.requests_frame()
    if frame.empty:
        return frame
    frame.insert(1, "request_id", frame.groupby("replication").cumcount())
    frame["outcome"] = pd.Categorical(frame["outcome"].map(OUTCOME_NAMES), categories=list(OUTCOME_NAMES.values()))
    frame["latency_ms"] = (frame["end_s"] - frame["arrival_s"]) * 1000.0
    frame["queue_wait_ms"] = (frame["start_s"] - frame["arrival_s"]) * 1000.0
    return frame


def clock_start_h(scenario: Scenario) -> float | None:
    """The hour of the day at simulated t = 0, for time-of-day axes: `serving.clock_start_h` when
    set, else a diurnal arrival's `start_time_h`, else the serving's default (midnight); None for a
    scenario without a clock (a batch job)."""
    serving_h = getattr(scenario.serving, "clock_start_h", None)
    if serving_h is not None and "clock_start_h" in scenario.serving.model_fields_set:
        return float(serving_h)
    arrival_h = getattr(scenario.workload.arrival, "start_time_h", None) if scenario.workload is not None else None
    if arrival_h is not None:
        return float(arrival_h)
    return None if serving_h is None else float(serving_h)


def write_run_folder(result: RunResult, out_dir: Path) -> list[Path]:
    """Write everything a run produced into `out_dir`; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    warmup_s = result.scenario.warmup_s
    summary_path = out_dir / "summary.json"
    atomic_write_json(summary_path, result.summary)
    written.append(summary_path)
    # What ran, for the report's provenance and time axes: the file on disk may change after the run.
    scenario_path = out_dir / SCENARIO_FILE
    atomic_write_json(scenario_path, result.scenario.model_dump(mode="json", exclude_none=True))
    written.append(scenario_path)

    timeseries = result.timeseries_frame()
    ts_path = out_dir / "timeseries.parquet"
    atomic_write(ts_path, lambda tmp: timeseries.to_parquet(tmp, index=False))
    written.append(ts_path)
    if result.scenario.serving.mode == "batch":
        from capsim.report.batchjob_plots import job_progress

        progress_path = out_dir / "job_progress.png"
        job_progress(timeseries, result.summary, progress_path)
        return [*written, progress_path]
    levels_path = out_dir / "queue_utilization.png"
    clock_h = clock_start_h(result.scenario)
    levels_over_time(timeseries, result.summary, levels_path, warmup_s, clock_h)
    written.append(levels_path)
    if result.scenario.serving.mode in ("streaming", "async"):
        from capsim.report.backlog_plots import backlog_over_time

        name = "lag_over_time.png" if result.scenario.serving.mode == "streaming" else "queue_depth.png"
        backlog_over_time(timeseries, result.summary, out_dir / name, warmup_s, clock_h)
        written.append(out_dir / name)
    if result.scenario.serving.mode == "llm":
        from capsim.report.llm_plots import llm_over_time

        llm_path = out_dir / "llm_over_time.png"
        llm_over_time(timeseries, result.summary, llm_path, warmup_s, clock_h)
        written.append(llm_path)
    if getattr(result.scenario.serving, "autoscaling", None) is not None:
        fleet_path = out_dir / "replicas_over_time.png"
        fleet_over_time(timeseries, result.summary, fleet_path, warmup_s, clock_h)
        written.append(fleet_path)

    requests = requests_table(result)
    if not requests.empty:
        req_path = out_dir / "requests.parquet"
        atomic_write(req_path, lambda tmp: requests.to_parquet(tmp, index=False))
        written.append(req_path)
        cdf_path = out_dir / "latency_cdf.png"
        latency_cdf(requests[requests["replication"] == 0], result.summary, cdf_path, warmup_s)
        written.append(cdf_path)
        if result.scenario.serving.mode == "llm":
            from capsim.report.llm_plots import llm_tails

            tails_path = out_dir / "ttft_tpot_tails.png"
            llm_tails(requests[requests["replication"] == 0], result.summary, tails_path, warmup_s)
            written.append(tails_path)
    return written
