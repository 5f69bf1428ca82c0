"""`capsim sweep`: grids of variants, the cheapest that meets the SLO, and bad --vary values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from capsim.engine import simulate
from capsim.errors import CapsimInputError
from capsim.scenario import load_scenario
from capsim.sweep import Axis, grid, parse_axis, run_sweep

ROOT = Path(__file__).resolve().parents[1]

# M/D/c-like: 150 req/s of 10 ms jobs on 1-executor replicas. One replica is overloaded (ρ = 1.5),
# two are at ρ = 0.75, three at 0.5: only two or more can meet a p99 of 100 ms.
SCENARIO = {
    "name": "sweep-test",
    "duration_s": 120,
    "warmup_s": 20,
    "seed": 3,
    "workload": {"arrival": {"kind": "poisson", "rate_rps": 150}},
    "service": {"kind": "deterministic", "mean_ms": 10},
    "hardware": {"name": "cpu", "usd_per_hour": 0.5},
    "serving": {"mode": "realtime", "replicas": 1, "load_balancer": "least_outstanding"},
    "slo": {"latency_ms": 100, "percentile": 99},
}


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    return path


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("serving.replicas=2,4,8", (2, 4, 8)),
        ("serving.replicas=2..6:2", (2, 4, 6)),
        ("serving.replicas=1..3", (1, 2, 3)),
        ("serving.batching.max_wait_ms=0..1:0.25", (0.0, 0.25, 0.5, 0.75, 1.0)),
        ("serving.load_balancer=random,power_of_two", ("random", "power_of_two")),
        ("serving.timeout_ms=null,50", (None, 50)),
    ],
)
def test_axis_values_keep_their_types(text: str, values: tuple) -> None:
    axis = parse_axis(text)
    assert axis.values == values
    assert [type(v) for v in axis.values] == [type(v) for v in values]


@pytest.mark.parametrize(
    "text", ["serving.replicas", "=1,2", "serving.replicas=", "serving.replicas=5..2", "serving.replicas=1..4:0",
             "serving.replicas=a..b", "serving.replicas=1,1", "serving.replicas=1..100000000"],
)
def test_bad_axes_are_one_line_errors(text: str) -> None:
    with pytest.raises(CapsimInputError) as exc:
        parse_axis(text)
    assert exc.value.source == f"--vary {text}"


def test_grid_is_the_product_with_the_last_axis_fastest() -> None:
    variants = grid([Axis("a", (1, 2)), Axis("b", ("x", "y", "z"))])
    assert variants == [{"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z")]
    with pytest.raises(CapsimInputError):
        grid([Axis("a", (1,)), Axis("a", (2,))])


def test_each_variant_equals_its_own_simulation_and_the_cheapest_meeting_the_slo_is_marked(scenario_file: Path) -> None:
    result = run_sweep(scenario_file, [parse_axis("serving.replicas=1..3")], jobs=1)
    assert [row["serving.replicas"] for row in result.rows] == [1, 2, 3]
    for variant, summary in zip(result.variants, result.summaries, strict=True):
        alone = simulate(load_scenario(scenario_file, [f"serving.replicas={variant['serving.replicas']}"]),
                         keep_requests=False).summary  # fmt: skip
        assert summary["latency_ms"] == alone["latency_ms"]  # same seed, same streams: identical runs
        assert summary["cost"]["usd_per_hour"] == pytest.approx(0.5 * variant["serving.replicas"])
    assert [row["slo_met"] for row in result.rows] == [False, True, True]
    assert result.best_index == 1


def test_parallel_workers_give_the_same_rows_in_grid_order(scenario_file: Path) -> None:
    axes = [parse_axis("serving.replicas=2,3"), parse_axis("serving.load_balancer=round_robin,random")]
    serial = run_sweep(scenario_file, axes, jobs=1)
    parallel = run_sweep(scenario_file, axes, jobs=2)
    assert parallel.rows == serial.rows


def test_a_bad_value_names_the_variant_before_anything_runs(scenario_file: Path) -> None:
    with pytest.raises(CapsimInputError) as exc:
        run_sweep(scenario_file, [parse_axis("serving.replicas=2,-1")], jobs=1)
    assert exc.value.field == "serving.replicas"
    assert "(in the variant serving.replicas=-1)" in str(exc.value)


def _capsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT)  # fmt: skip


def test_cli_writes_the_sweep_folder_and_json(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _capsim("sweep", str(scenario_file), "--vary", "serving.replicas=1..3", "--jobs", "1", "--json",
                   "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["best"] == 1 and len(payload["rows"]) == 3
    frame = pd.read_parquet(out / "sweep.parquet")
    assert frame["best"].tolist() == [False, True, False]
    assert frame["serving.replicas"].tolist() == [1, 2, 3]
    assert (out / "cost_vs_p99.png").stat().st_size > 0
    saved = json.loads((out / "summaries.json").read_text())
    assert saved["variants"][1]["varied"] == {"serving.replicas": 2}


def test_cli_bad_vary_exits_2_with_one_line(scenario_file: Path) -> None:
    proc = _capsim("sweep", str(scenario_file), "--vary", "serving.replicas=3..1")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --vary serving.replicas=3..1: expected a range")
    assert "Traceback" not in proc.stderr


def test_a_batch_job_sweep_ranks_by_the_whole_bill_and_the_deadline() -> None:
    result = run_sweep(ROOT / "scenarios/nightly-scoring-t4.yaml", [parse_axis("serving.workers=1..3")], jobs=1)
    assert result.is_job and result.cost_key == "usd"
    makespans = [row["makespan_s"] for row in result.rows]
    assert makespans == sorted(makespans, reverse=True)  # more workers finish sooner
    assert [row["slo_met"] for row in result.rows] == [False, True, True]  # one T4 misses the 4-hour window
    assert result.best_index == 1  # the fewest workers that make it is also the cheapest job


def _with(tmp_path: Path, **changes: object) -> Path:
    """SCENARIO with top-level sections replaced, written to a file."""
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump({**SCENARIO, **changes}))
    return path


def test_the_tail_compared_is_the_slos_percentile(tmp_path: Path) -> None:
    from capsim.report.sweep import chart_name, cost_latency_figure, sweep_table

    path = _with(tmp_path, slo={"latency_ms": 40, "percentile": 95}, duration_s=30, warmup_s=0)
    result = run_sweep(path, [parse_axis("serving.replicas=2,3")], jobs=1)
    for row, summary in zip(result.rows, result.summaries, strict=True):
        assert row["tail_percentile"] == 95.0
        assert row["tail_latency_ms"] == summary["latency_ms"]["p95"] != summary["latency_ms"]["p99"]
    assert chart_name(result) == "cost_vs_p95.png"
    headers = [column.header for column in sweep_table(result).columns]
    assert "p95 ms" in headers and "p99 ms" not in headers
    fig = cost_latency_figure(result)
    ax = fig.axes[0]
    assert "p95" in ax.get_ylabel()
    slo_lines = [line for line in ax.get_lines() if line.get_label().startswith("SLO")]
    assert [line.get_label() for line in slo_lines] == ["SLO: p95 ≤ 40 ms"]
    assert slo_lines[0].get_ydata()[0] == 40


def test_an_slo_percentile_between_the_summarys_keys_reads_the_next_one_above() -> None:
    from capsim.sweep import tail_key

    assert [tail_key(p) for p in (50, 95, 97.5, 99, 99.9, 99.99, None)] == \
        ["p50", "p95", "p99", "p99", "p999", "max", "p99"]  # fmt: skip


def test_an_unstable_variant_is_marked_and_never_chosen_even_when_it_meets_the_slo(tmp_path: Path) -> None:
    from capsim.report.sweep import sweep_table, verdict_lines

    # 101 req/s of 10 ms on one executor: rho = 1.01, yet in 5 s the queue has not grown past a
    # generous 2 s SLO, so the unstable variant "meets" it; it must not be the one chosen.
    path = _with(tmp_path, duration_s=5, warmup_s=0, workload={"arrival": {"kind": "poisson", "rate_rps": 101}},
                 slo={"latency_ms": 2000, "percentile": 99})  # fmt: skip
    result = run_sweep(path, [parse_axis("serving.replicas=1,2")], jobs=1)
    unstable, stable = result.rows
    assert unstable["rho"] == pytest.approx(1.01) and unstable["unstable"] is True
    assert unstable["slo_met"] is True  # what made it look like the cheapest
    assert stable["rho"] == pytest.approx(0.505) and stable["unstable"] is False
    assert result.best_index == 1
    cells = [list(column.cells) for column in sweep_table(result).columns]
    rho_column = next(c for c in cells if any("unstable" in str(v) for v in c))
    assert "unstable" in str(rho_column[0]) and "unstable" not in str(rho_column[1])
    assert any("1 variant(s) unstable" in line for line in verdict_lines(result))


def test_an_autoscaled_fleet_is_judged_at_its_largest(tmp_path: Path) -> None:
    from capsim.sweep import load_over_capacity

    scaled = load_scenario(_with(tmp_path, serving={**SCENARIO["serving"], "autoscaling": {
        "kind": "hpa", "min_replicas": 1, "max_replicas": 4, "metric": "utilization", "target": 0.6}}))  # fmt: skip
    assert load_over_capacity(scaled) == pytest.approx(1.5 / 4)


def test_when_the_load_is_varied_the_cheapest_is_chosen_at_each_load_level(tmp_path: Path) -> None:
    from capsim.report.sweep import cost_latency_figure, verdict_lines, write_sweep_folder

    path = _with(tmp_path, duration_s=30, warmup_s=0)
    axes = [parse_axis("workload.arrival.rate_rps=50,150"), parse_axis("serving.replicas=1..3")]
    result = run_sweep(path, axes, jobs=1)
    assert [a.path for a in result.load_axes] == ["workload.arrival.rate_rps"]
    # 50 req/s: one replica (rho 0.5) suffices; 150 req/s: one is unstable, two are needed.
    assert result.best_indices == [0, 4]
    assert result.best_index is None  # no single answer across loads
    assert [line.split(":")[0] for line in verdict_lines(result)[:2]] == \
        ["at workload.arrival.rate_rps=50", "at workload.arrival.rate_rps=150"]  # fmt: skip
    frame = pd.read_parquet(write_sweep_folder(result, tmp_path / "out")[1])
    assert frame.index[frame["best"]].tolist() == [0, 4]
    legend = [text.get_text() for text in cost_latency_figure(result).axes[0].get_legend().get_texts()]
    assert legend[:2] == ["rate_rps=50: ★ replicas=1", "rate_rps=150: ★ replicas=2"]


def test_a_varied_field_that_changes_nothing_is_named_in_a_warning(tmp_path: Path) -> None:
    path = _with(tmp_path, duration_s=10, warmup_s=0)
    # A pinned price and a service that does not depend on the hardware: only the label changes.
    result = run_sweep(path, [parse_axis("hardware.name=gpu-a,gpu-b"), parse_axis("serving.replicas=2,3")], jobs=1)
    assert len(result.warnings) == 1 and result.warnings[0].startswith("--vary hardware.name: ")
    assert result.rows[0]["p99_ms"] == result.rows[2]["p99_ms"]  # indeed identical runs
    # Catalogue names with the price pinned: only the energy figures (the catalogue's TDP) differ.
    energy = run_sweep(path, [parse_axis("hardware.name=L4,A10G")], jobs=1)
    assert len(energy.warnings) == 1 and "energy" in energy.warnings[0]
    # A price that follows the name is a real change: no warning.
    priced = _with(tmp_path, duration_s=10, warmup_s=0, hardware={"name": "L4"})
    assert run_sweep(priced, [parse_axis("hardware.name=L4,A10G")], jobs=1).warnings == []


def test_cli_warns_on_stderr_in_one_line(scenario_file: Path) -> None:
    proc = _capsim("sweep", str(scenario_file), "--set", "duration_s=10", "--set", "warmup_s=0", "--vary",
                   "hardware.name=gpu-a,gpu-b", "--jobs", "1", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "hardware.name" in warnings[0] and "identical runs" in warnings[0]
    assert json.loads(proc.stdout)["warnings"] == [warnings[0].removeprefix("warning: ")]
