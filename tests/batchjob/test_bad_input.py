"""Bad batch-job input: one line naming the file and the field, exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from capsim.errors import CapsimInputError
from capsim.scenario import load_scenario
from tests.batchjob.helpers import batch_dict


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        (["serving.workers=0"], "serving.workers", "greater than or equal to 1"),
        (["serving.workers=-3"], "serving.workers", "greater than or equal to 1"),
        (["serving.batch_size=0"], "serving.batch_size", "greater than or equal to 1"),
        (["serving.dataset.items=0"], "serving.dataset.items", "greater than or equal to 1"),
        (["serving.dataset.partitions=2000"], "serving.dataset", "must not exceed items"),
        (["serving.dataset.partition_sizes=[10, 20]"], "serving.dataset", "exactly one of items or partition_sizes"),
        (["serving.dataset.items=null"], "serving.dataset", "exactly one of items or partition_sizes"),
        (["serving.read_mb_per_s=100"], "serving", "needs dataset.item_bytes"),
        (["serving.read_mb_per_s=0", "serving.dataset.item_bytes=10"], "serving.read_mb_per_s", "greater than 0"),
        (["serving.checkpoint.every_batches=0"], "serving.checkpoint.every_batches", "greater than or equal to 1"),
        (["serving.spot.fraction=2", "serving.spot.usd_per_hour=1"], "serving.spot.fraction", "less than or equal"),
        (["serving.deadline_s=0.5"], "serving.deadline_s", "shorter than start-up plus one batch"),
        (["serving.deadline_s=10", "serving.job_startup_s=9.5"], "serving.deadline_s", "no number of workers"),
        (["serving.deadline_s=200000"], None, "must reach serving.deadline_s"),
        (["workload.arrival.kind=poisson", "workload.arrival.rate_rps=1"], None, "workload: a batch job reads"),
        (["warmup_s=10"], None, "warmup_s: a batch job is measured whole"),
        (["serving.search.max_workers=0"], "serving.search.max_workers", "greater than or equal to 1"),
        (["serving.search.min_workers=8", "serving.search.max_workers=4"], "serving.search", "must be >= min_workers"),
        (["serving.workerz=2"], "serving.workerz", "unknown key"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, overrides: list[str], field: str | None, words: str) -> None:
    path = write(tmp_path, batch_dict(*overrides))
    with pytest.raises(CapsimInputError) as info:
        load_scenario(path)
    assert info.value.source == str(path)
    assert info.value.field == field
    assert words in info.value.detail


@pytest.mark.parametrize(
    ("candidate", "field", "words"),
    [
        ({"name": "T4"}, "serving.search.hardware[0].service", "give this hardware's service time"),
        (
            {"name": "T44", "service": {"kind": "deterministic", "mean_ms": 5}},
            "serving.search.hardware[0]: hardware.name",
            "did you mean",
        ),
        (  # the catalogue has no spot price for T4
            {"name": "T4", "service": {"kind": "deterministic", "mean_ms": 5}, "spot": {"fraction": 1}},
            "serving.search.hardware[0]: serving.spot.usd_per_hour",
            "spot",
        ),
        (
            {"name": "T4", "service": {"kind": "deterministic", "mean_ms": 50000}},
            "serving.search.hardware[0]: serving.deadline_s",
            "shorter than start-up plus one batch",
        ),
    ],
)
def test_bad_hardware_candidate_is_named_at_load(tmp_path: Path, candidate: dict, field: str, words: str) -> None:
    path = write(tmp_path, batch_dict(deadline_s=20.0, search={"hardware": [candidate]}))
    with pytest.raises(CapsimInputError) as info:
        load_scenario(path)
    assert info.value.source == str(path)
    assert info.value.field == field
    assert words in info.value.detail


def test_partition_sizes_must_be_positive(tmp_path: Path) -> None:
    data = batch_dict(dataset={"partition_sizes": [10, 0, 5]})
    with pytest.raises(CapsimInputError) as info:
        load_scenario(write(tmp_path, data))
    assert "partition_sizes" in str(info.value)


def test_realtime_still_needs_a_workload(tmp_path: Path) -> None:
    data = batch_dict()
    data["serving"] = {"mode": "realtime", "replicas": 1}
    with pytest.raises(CapsimInputError) as info:
        load_scenario(write(tmp_path, data))
    assert "workload: required field is missing" in info.value.detail


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, batch_dict("serving.deadline_s=0.5"))
    for command in (["simulate", str(path)], ["check", str(path)], ["simulate", str(path), "--solve", "workers"]):
        proc = run_cli(*command)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"error: {path}: serving.deadline_s: 0.5 s is shorter")


def test_solve_needs_a_deadline_and_candidates(tmp_path: Path) -> None:
    path = write(tmp_path, batch_dict())
    proc = run_cli("simulate", str(path), "--solve", "workers")
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {path}: serving.deadline_s: --solve needs")
    path = write(tmp_path, batch_dict("serving.deadline_s=100"))
    proc = run_cli("simulate", str(path), "--solve", "hardware")
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {path}: serving.search.hardware: ")
    proc = run_cli("simulate", str(path), "--solve", "replicas")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --solve: expected one of workers, hardware, got 'replicas'"


def test_solve_is_for_batch_jobs_only() -> None:
    proc = run_cli(
        "simulate", str(Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"), "--solve", "workers"
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "error: --solve: answers batch jobs (serving.mode: batch); this scenario's mode is realtime"
    )
