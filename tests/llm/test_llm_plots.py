"""The LLM run's plots (capsim/report/llm_plots.py), checked on their matplotlib objects: TTFT and
TPOT computed as vLLM's bench defines them from a hand-made request table, each tail with its own
SLO bound named with the percentile, the engines over a day on an hour-of-day axis, and the files
`capsim simulate --out` writes for an LLM run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from capsim import load_scenario, simulate
from capsim.report import llm_plots
from capsim.report.run_folder import write_run_folder

ROOT = Path(__file__).resolve().parents[2]
DAY_S = 86_400.0


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the plot functions would save (kept open, nothing written)."""
    kept: list[Any] = []
    monkeypatch.setattr(llm_plots, "_save", lambda fig, _path: kept.append(fig))
    return kept


def _requests() -> pd.DataFrame:
    # arrival, first token, end, output tokens, outcome: by hand
    rows = [
        (0.5, 0.600, 1.600, 11, "completed"),  # TTFT 100 ms, TPOT 1000 / 10 = 100 ms
        (1.0, 1.050, 1.250, 5, "completed"),  # TTFT 50 ms, TPOT 200 / 4 = 50 ms
        (2.0, 2.200, 2.200, 1, "completed"),  # TTFT 200 ms; one token: no TPOT
        (3.0, np.nan, 3.0, 9, "rejected"),  # not completed: in neither
        (0.1, 0.9, 2.9, 3, "completed"),  # arrived in the warm-up (0.1 < 0.25): left out
    ]
    frame = pd.DataFrame(rows, columns=["arrival_s", "first_token_s", "end_s", "output_tokens", "outcome"])
    frame["replication"] = 0
    return frame


SLO = {"ttft_ms": 500.0, "tpot_ms": 50.0, "latency_ms": None, "percentile": 99.0}


def test_ttft_and_tpot_by_the_benchmark_definitions() -> None:
    ttft, tpot = llm_plots.ttft_tpot_ms(_requests(), warmup_s=0.25)
    np.testing.assert_allclose(ttft, [100.0, 50.0, 200.0])
    np.testing.assert_allclose(tpot, [100.0, 50.0])


def test_tails_mark_each_bound_with_its_percentile(figures: list[Any]) -> None:
    llm_plots.llm_tails(_requests(), {"scenario": "t", "slo": SLO}, Path("unused.png"), warmup_s=0.25)
    (fig,) = figures
    left, right = fig.axes
    for ax, bound, name in ((left, 500.0, "TTFT"), (right, 50.0, "TPOT")):
        labels = ax.get_legend_handles_labels()[1]
        assert f"SLO: p99 {name} ≤ {bound:g} ms" in labels
        assert "share allowed slower: 1%" in labels
        vertical = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert [float(line.get_xdata()[0]) for line in vertical] == [bound]
        assert ax.get_yscale() == "log"
    assert "time to first token" in left.get_xlabel() and "time per output token" in right.get_xlabel()


def test_tails_without_an_slo_draw_no_bound(figures: list[Any]) -> None:
    llm_plots.llm_tails(_requests(), {"scenario": "t", "slo": None}, Path("unused.png"), warmup_s=0.0)
    for ax in figures[0].axes:
        assert not any(label.startswith("SLO") for label in ax.get_legend_handles_labels()[1])


def _day() -> pd.DataFrame:
    time_s = np.arange(300.0, DAY_S + 1, 300.0)
    level = 1.0 + np.sin(time_s / DAY_S * 2 * np.pi)
    return pd.DataFrame({
        "replication": 0, "time_s": time_s, "arrival_rps": 20 * level, "ttft_mean_ms": 40 + 10 * level,
        "running": 30 * level, "waiting": 2 * level, "kv_utilization": level / 2.5, "replicas": 2 + np.round(level),
        "replicas_desired": 2 + np.round(level), "replicas_starting": 0.0,
    })  # fmt: skip


def test_engines_over_a_day_read_as_hours_with_the_ttft_bound(figures: list[Any]) -> None:
    summary = {"scenario": "t", "simulated_s": DAY_S, "slo": SLO}
    llm_plots.llm_over_time(_day(), summary, Path("unused.png"), warmup_s=0.0, clock_start_h=0.0)
    _traffic, queue, kv, fleet, ttft = figures[0].axes  # the four panels, then the TTFT twin axis
    assert fleet.get_xlabel() == "hour of day"
    assert ttft.get_yscale() == "log"
    assert [line.get_ydata()[0] for line in ttft.get_lines() if line.get_linestyle() == ":"] == [500.0]
    assert "SLO: p99 TTFT ≤ 500 ms" in ttft.get_legend_handles_labels()[1]
    assert queue.get_legend_handles_labels()[1] == ["running", "waiting (new and preempted)"]
    np.testing.assert_allclose(kv.get_lines()[0].get_ydata(), 100 * _day()["kv_utilization"])  # percent
    assert kv.get_ylim() == (0.0, 105.0)
    assert "ready" in fleet.get_legend_handles_labels()[1]


def test_simulate_out_writes_the_llm_plots(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "scenarios" / "llm-check.yaml", ["duration_s=120", "warmup_s=10"])
    written = {p.name for p in write_run_folder(simulate(scenario, keep_requests=True), tmp_path)}
    assert {"llm_over_time.png", "ttft_tpot_tails.png", "latency_cdf.png"} <= written
    assert (tmp_path / "ttft_tpot_tails.png").read_bytes()[:4] == b"\x89PNG"
