"""`capsim sweep --cluster`: a 200-variant sweep on a Dask LocalCluster gives exactly the local run's
results; an unreachable or missing cluster is one line and exit 2; Ctrl-C keeps what finished."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import capsim.plan.executor
from capsim.cli.main import main
from capsim.errors import CapsimInputError
from capsim.sweep import SweepInterrupted, parse_axis, run_sweep
from tests.scenario_helpers import scenario_dict
from tests.test_cli_startup import run_base_install

ROOT = Path(__file__).resolve().parents[1]

# Five simulated seconds of 40 req/s: a variant takes milliseconds, so 200 of them take seconds.
TINY = scenario_dict("duration_s=5", "warmup_s=1", "seed=7", "workload.arrival.rate_rps=40",
                     "hardware.usd_per_hour=0.5", "serving.load_balancer=random",
                     service={"kind": "exponential", "mean_ms": 20},
                     slo={"latency_ms": 100, "percentile": 99})  # fmt: skip
GRID_200 = ["serving.replicas=1..10", "service.mean_ms=5..100:5"]  # 10 × 20 variants


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _same(a: Any, b: Any) -> bool:
    """Exactly equal, NaN included (JSON text keeps every float's repr)."""
    return json.dumps(a, sort_keys=True, default=float) == json.dumps(b, sort_keys=True, default=float)


@pytest.mark.slow
def test_a_200_variant_sweep_on_a_local_dask_cluster_equals_the_local_run(tiny: Path) -> None:
    axes = [parse_axis(text) for text in GRID_200]
    local = run_sweep(tiny, axes, jobs=2)
    dask = run_sweep(tiny, axes, jobs=2, cluster="local")
    assert len(local.rows) == len(dask.rows) == 200
    assert dask.variants == local.variants  # grid order, whatever the order of completion
    for i in range(200):
        assert _same(dask.rows[i], local.rows[i]), local.variants[i]
        assert _same(dask.summaries[i], local.summaries[i]), local.variants[i]
    assert dask.best_index == local.best_index is not None
    assert len({row["p99_ms"] for row in local.rows}) > 100  # the variants do differ: the check has teeth


def _capsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT)  # fmt: skip


def test_an_unreachable_cluster_is_one_line_and_exit_2(tiny: Path) -> None:
    proc = _capsim("sweep", str(tiny), "--vary", "serving.replicas=1,2", "--cluster", "tcp://127.0.0.1:1")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: --cluster: cannot reach the Dask scheduler at tcp://127.0.0.1:1")


def test_without_dask_only_a_cluster_sweep_asks_for_the_extra(tiny: Path) -> None:
    asked = run_base_install("sweep", str(tiny), "--vary", "serving.replicas=1,2", "--cluster", "local", "--quiet")
    assert asked.returncode == 2, asked.stderr
    assert asked.stderr.strip().splitlines() == [
        "error: this command needs dask, which the base install leaves out: pip install 'capsim[cluster]' "
        "(or, in a clone, pip install -e '.[cluster]')"
    ]
    plain = run_base_install("sweep", str(tiny), "--vary", "serving.replicas=1,2", "--jobs", "2", "--quiet")
    assert plain.returncode == 0, plain.stderr


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """Ctrl-C once `count` variants have finished (as if pressed then)."""
    real = capsim.plan.executor.run_variants

    def run_variants(run_one: Any, tasks: Any, *, jobs: int, cluster: str | None, on_result: Any = None) -> Any:
        done = []

        def then_stop(index: int, result: Any) -> None:
            on_result(index, result)
            done.append(index)
            if len(done) == count:
                raise KeyboardInterrupt

        return real(run_one, tasks, jobs=jobs, cluster=cluster, on_result=then_stop)

    monkeypatch.setattr(capsim.plan.executor, "run_variants", run_variants)


def test_ctrl_c_keeps_the_finished_variants_marked_partial(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(SweepInterrupted) as exc:
        run_sweep(tiny, [parse_axis("serving.replicas=1..6")], jobs=1)
    result = exc.value.result
    assert result.partial and result.variants_total == 6
    assert result.variants == [{"serving.replicas": r} for r in (1, 2, 3)]
    assert [row["serving.replicas"] for row in result.rows] == [1, 2, 3]


def test_cli_ctrl_c_writes_what_finished_marked_partial_and_exits_130(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _interrupt_after(monkeypatch, 2)
    out = tmp_path / "out"
    code = main(["sweep", str(tiny), "--vary", "serving.replicas=1..5", "--jobs", "1", "--out", str(out), "--quiet"])
    assert code == 130
    assert "interrupted: 2 of 5 variants finished" in capsys.readouterr().out
    saved = json.loads((out / "summaries.json").read_text())
    assert saved["partial"] is True and saved["variants_total"] == 5
    assert [v["varied"] for v in saved["variants"]] == [{"serving.replicas": 1}, {"serving.replicas": 2}]
    assert pd.read_csv(out / "sweep.csv")["serving.replicas"].tolist() == [1, 2]


def test_bad_input_found_while_a_variant_runs_names_the_variant(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import capsim.engine

    def refuse(*_: Any, **__: Any) -> Any:
        raise CapsimInputError("expected a smaller fleet", source="tiny.yaml", field="serving.replicas")

    monkeypatch.setattr(capsim.engine, "simulate", refuse)
    with pytest.raises(CapsimInputError) as exc:
        run_sweep(tiny, [parse_axis("serving.replicas=2,3")], jobs=1)
    assert exc.value.one_line() == ("tiny.yaml: serving.replicas: expected a smaller fleet "
                                    "(in the variant serving.replicas=2)")  # fmt: skip


def test_each_row_streams_out_once_as_its_variant_finishes(tiny: Path) -> None:
    streamed: list[tuple[int, dict[str, Any]]] = []
    result = run_sweep(tiny, [parse_axis("serving.replicas=1..4")], jobs=2,
                       on_row=lambda i, row: streamed.append((i, row)))  # fmt: skip
    assert sorted(i for i, _ in streamed) == [0, 1, 2, 3]
    assert [row for _, row in sorted(streamed, key=lambda pair: pair[0])] == result.rows
