"""What the plots show, checked on their matplotlib objects (labels, scales, ticks), not on pixels:
time of day for a day-long run, the SLO named with its percentile, the latency tail as a CCDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from capsim.report import plots
from capsim.report.axes import ccdf, percentile_name, slo_label, time_axis

DAY_S = 86_400.0


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the plot functions would save (kept open, nothing written)."""
    kept: list[Any] = []
    monkeypatch.setattr(plots, "_save", lambda fig, _path: kept.append(fig))
    return kept


def _day_timeseries(step_s: float = 300.0) -> pd.DataFrame:
    time_s = np.arange(0.0, DAY_S, step_s)
    level = 1.0 + np.sin(time_s / DAY_S * 2 * np.pi)
    return pd.DataFrame({
        "replication": 0, "time_s": time_s, "queue_length": level, "utilization": level / 2.5,
        "arrival_rps": 100 * level, "latency_mean_ms": 10 + level, "replicas_desired": 2.0,
        "replicas_starting": 0.0, "replicas": 2.0,
    })  # fmt: skip


def _summary(percentile: float, latency_ms: float = 50.0, simulated_s: float = DAY_S) -> dict[str, Any]:
    return {"scenario": "t", "simulated_s": simulated_s, "slo": {"latency_ms": latency_ms, "percentile": percentile}}


def _tick_labels(ax: Any) -> list[str]:
    """The x tick labels drawn inside the axis' limits."""
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    return [t.get_text() for loc, t in zip(ax.get_xticks(), ax.get_xticklabels(), strict=True)
            if lo - 1e-9 <= loc <= hi + 1e-9 and t.get_text()]  # fmt: skip


def test_names_of_percentiles_and_slos() -> None:
    assert [percentile_name(p) for p in (50, 95, 99, 99.9, 99.99)] == ["p50", "p95", "p99", "p99.9", "p99.99"]
    assert slo_label({"latency_ms": 200, "percentile": 95}) == "SLO: p95 ≤ 200 ms"
    assert slo_label({"latency_ms": None, "percentile": None}) is None


@pytest.mark.parametrize(
    ("span_s", "clock_h", "label"),
    [(600, 0.0, "time since start (s)"), (7200, 0.0, "time since start (min)"),
     (4 * 3600, 0.0, "time since start (hours)"), (DAY_S, 0.0, "hour of day"),
     (DAY_S, None, "time since start (hours)"), (3 * DAY_S, 0.0, "time since start (hours)")],
)  # fmt: skip
def test_time_axis_units_follow_the_span(span_s: float, clock_h: float | None, label: str) -> None:
    assert time_axis(span_s, clock_h).label == label


def test_a_day_reads_as_hours_of_the_day_with_ticks_every_three_hours(figures: list[Any]) -> None:
    plots.levels_over_time(_day_timeseries(), _summary(99), Path("unused.png"), warmup_s=1800, clock_start_h=0.0)
    top, bottom = figures[0].axes
    assert bottom.get_xlabel() == "hour of day"
    assert bottom.get_xlim() == (0.0, 24.0)
    assert _tick_labels(bottom) == ["0", "3", "6", "9", "12", "15", "18", "21", "24"]
    assert top.get_lines()[0].get_xdata().max() <= 24.0  # the data are in hours too, not seconds


def test_a_day_starting_at_six_wraps_past_midnight(figures: list[Any]) -> None:
    plots.levels_over_time(_day_timeseries(), _summary(99), Path("unused.png"), warmup_s=0, clock_start_h=6.0)
    labels = _tick_labels(figures[0].axes[1])
    assert labels[0] == "6" and labels[-1] == "6" and "0" in labels and "24" not in labels


def test_the_fleet_plot_names_the_slos_percentile(figures: list[Any]) -> None:
    plots.fleet_over_time(_day_timeseries(), _summary(95, 80.0), Path("unused.png"), warmup_s=0, clock_start_h=0.0)
    top, _twin, bottom = figures[0].axes[0], figures[0].axes[2], figures[0].axes[1]
    assert bottom.get_xlabel() == "hour of day"
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert "SLO: p95 ≤ 80 ms" in legend and "mean latency per interval (ms)" in legend


def test_the_latency_plot_is_a_ccdf_with_percent_ticks_and_the_slo(figures: list[Any]) -> None:
    rng = np.random.default_rng(1)
    arrival_s = np.sort(rng.uniform(0, 100, 20_000))
    latency_s = rng.lognormal(np.log(0.01), 0.8, arrival_s.size)  # spans more than a decade: log x
    requests = pd.DataFrame({"outcome": "completed", "arrival_s": arrival_s, "end_s": arrival_s + latency_s})
    plots.latency_cdf(requests, _summary(99.9, 100.0, 100.0), Path("unused.png"), warmup_s=0)
    ax = figures[0].axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    assert "1 − CDF" in ax.get_ylabel() and ax.get_xlabel() == "latency (ms, log scale)"
    ax.figure.canvas.draw()
    y_ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert {"100%", "10%", "1%", "0.1%", "0.01%"} <= set(y_ticks)
    curve = ax.get_lines()[0]
    ordered_ms = np.sort(latency_s) * 1000.0
    # 1 − F: the share of requests slower than each value
    assert curve.get_ydata()[0] == pytest.approx(1 - 1 / ordered_ms.size)
    assert curve.get_xdata()[-1] == pytest.approx(ordered_ms[-2])
    labels = [line.get_label() for line in ax.get_lines()]
    assert "SLO: p99.9 ≤ 100 ms" in labels
    allowed = next(line for line in ax.get_lines() if line.get_label().startswith("share allowed"))
    assert allowed.get_ydata()[0] == pytest.approx(0.001)


def test_ccdf_drops_only_the_undrawable_last_point() -> None:
    x, share = ccdf(np.array([3.0, 1.0, 2.0, 4.0]))
    assert x.tolist() == [1.0, 2.0, 3.0] and share.tolist() == [0.75, 0.5, 0.25]


def test_the_validation_chart_is_a_ccdf_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    from capsim.calibration import cdf_plot

    kept: list[Any] = []
    monkeypatch.setattr(cdf_plot, "atomic_write", lambda _path, _write: kept.append(plt.gcf()))
    monkeypatch.setattr(cdf_plot.plt, "close", lambda _fig: None)
    rng = np.random.default_rng(2)
    cdf_plot.plot_latency_cdfs({"step#0": (rng.exponential(5, 2000), rng.exponential(5.5, 6000))},
                               tmp_path / "v.png", title="t")  # fmt: skip
    ax = kept[0].axes[0]
    assert ax.get_yscale() == "log" and "1 − CDF" in ax.get_ylabel()
    assert [line.get_label() for line in ax.get_lines()][:2] == ["step#0 measured", "step#0 simulated"]


def test_a_batch_job_reads_in_hours_since_submission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from capsim.report import batchjob_plots

    kept: list[Any] = []
    monkeypatch.setattr(batchjob_plots, "_save", lambda fig, _path: kept.append(fig))
    time_s = np.arange(0.0, 7200.0, 60.0)
    frame = pd.DataFrame({"replication": 0, "time_s": time_s, "items_done": time_s * 100, "workers_billed": 2.0,
                          "workers_busy": 2.0})  # fmt: skip
    summary = {"scenario": "job", "deadline_s": 4 * 3600.0, "items": {"total": 720_000}}
    batchjob_plots.job_progress(frame, summary, tmp_path / "j.png")
    top, bottom = kept[0].axes
    assert bottom.get_xlabel() == "time since submission (hours)"
    assert bottom.get_xlim()[1] > 4.0  # the deadline's line inside the frame
    kept[0].canvas.draw()
    assert "600k" in [t.get_text() for t in top.get_yticklabels()]


def test_the_run_folder_takes_the_clock_from_the_scenario(tmp_path: Path) -> None:
    from capsim.report.run_folder import clock_start_h
    from capsim.scenario import load_scenario

    base = yaml.safe_load((Path(__file__).resolve().parents[2] / "scenarios/diurnal-a10g-hpa.yaml").read_text())
    base["workload"]["arrival"]["start_time_h"] = 5
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(base))
    assert clock_start_h(load_scenario(path)) == 5.0  # the diurnal arrival's clock
    base["serving"]["clock_start_h"] = 7
    path.write_text(yaml.safe_dump(base))
    assert clock_start_h(load_scenario(path)) == 7.0  # the serving's clock, when set, wins
