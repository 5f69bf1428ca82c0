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
