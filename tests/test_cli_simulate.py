"""`capsim simulate` and `capsim check` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from capsim.cli.options import ENGINE_DEPRECATED

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_KEYS = {
    "scenario", "seed", "replications", "simulated_s", "requests", "throughput_rps", "latency_ms",
    "queue_wait_ms", "batch_size", "utilization", "replicas", "cost", "slo", "ci95",
}  # fmt: skip
DIST_KEYS = {"mean", "p50", "p90", "p95", "p99", "p999", "max"}


def capsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capsim.cli.main", *args],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip


def test_json_output_is_only_the_contract_object() -> None:
    proc = capsim("simulate", "scenarios/quickstart.yaml", "--json", "--set", "duration_s=60", "--set", "warmup_s=10")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # the whole of stdout parses
    assert summary.keys() >= CONTRACT_KEYS
    assert set(summary["latency_ms"]) == DIST_KEYS and set(summary["queue_wait_ms"]) == DIST_KEYS
    assert {"arrived", "completed", "rejected", "timed_out"} <= summary["requests"].keys()
    assert {"usd", "usd_per_hour", "usd_per_million_requests"} <= summary["cost"].keys()
    assert {"latency_ms", "percentile", "attainment", "goodput_rps"} <= summary["slo"].keys()
    assert summary["simulated_s"] == 60


def test_replications_give_confidence_intervals_and_seed_flag_changes_draws() -> None:
    args = ("simulate", "scenarios/quickstart.yaml", "--json", "--set", "duration_s=30", "--set", "warmup_s=5")
    three = json.loads(capsim(*args, "--replications", "3").stdout)
    assert three["replications"] == 3
    assert three["ci95"]["latency_ms"]["p99"] > 0
    seeded = json.loads(capsim(*args, "--seed", "99").stdout)
    default = json.loads(capsim(*args).stdout)
    assert seeded["seed"] == 99 and default["seed"] == 42
    assert seeded["requests"]["arrived"] != default["requests"]["arrived"]


def test_out_writes_summary_parquet_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = capsim(
        "simulate", "scenarios/quickstart.yaml", "--out", str(out), "--set", "duration_s=30", "--set", "warmup_s=0"
    )
    assert proc.returncode == 0, proc.stderr
    assert "p99" in proc.stdout  # the readable table
    for name in ("summary.json", "requests.parquet", "timeseries.parquet", "latency_cdf.png", "queue_utilization.png"):
        assert (out / name).stat().st_size > 0, name
    requests = pd.read_parquet(out / "requests.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert len(requests) == summary["requests"]["arrived"]  # no warm-up here: every request is counted
    assert {"arrival_s", "start_s", "end_s", "latency_ms", "outcome", "batch_size", "replica"} <= set(requests)
    series = pd.read_parquet(out / "timeseries.parquet")
    assert {"time_s", "queue_length", "utilization"} <= set(series)
    assert (out / "latency_cdf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_request_log_keeps_counts_and_writes_no_request_table(tmp_path: Path) -> None:
    base = ("simulate", "scenarios/quickstart.yaml", "--json", "--set", "duration_s=60", "--set", "warmup_s=10")
    exact = json.loads(capsim(*base).stdout)
    bounded = json.loads(capsim(*base, "--no-request-log", "--out", str(tmp_path)).stdout)
    assert bounded["requests"] == exact["requests"]
    for key in ("p50", "p90", "p99"):
        assert abs(bounded["latency_ms"][key] / exact["latency_ms"][key] - 1) < 0.01
    assert not (tmp_path / "requests.parquet").exists()


def test_check_reports_capacity() -> None:
    proc = capsim("check", "scenarios/fraud-scoring-cpu.yaml")
    assert proc.returncode == 0
    assert "valid" in proc.stdout and "utilization" in proc.stdout


def test_a_run_too_large_to_log_every_request_defaults_to_histograms() -> None:
    import io

    from rich.console import Console

    from capsim.cli.simulate import AUTO_REQUEST_LOG_MAX, keep_every_request
    from tests.scenario_helpers import make_scenario

    small = make_scenario("duration_s=100", "workload.arrival.rate_rps=10")
    large = make_scenario("duration_s=86400", "workload.arrival.rate_rps=5000")  # 432M requests
    assert AUTO_REQUEST_LOG_MAX < 5000 * 86400
    notes = io.StringIO()
    err = Console(file=notes)
    assert keep_every_request(small, None, err) is True
    assert keep_every_request(large, None, err) is False
    assert "432,000,000 requests" in notes.getvalue()
    assert keep_every_request(large, True, err) is True  # --request-log forces it
    assert keep_every_request(small, False, err) is False  # --no-request-log


def test_engine_flag_is_accepted_and_ignored_and_checked() -> None:
    # One real-time data plane (the compiled one): --engine stays one release as a no-op.
    proc = capsim("simulate", "scenarios/quickstart.yaml", "--json", "--set", "duration_s=30", "--set", "warmup_s=5",
                  "--engine", "simpy")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["engine"] == "compiled"
    notes = [line for line in proc.stderr.splitlines() if "--engine" in line]
    assert notes == [ENGINE_DEPRECATED] and notes[0].startswith("note: --engine is deprecated and ignored")
    proc = capsim("simulate", "scenarios/quickstart.yaml", "--json", "--set", "duration_s=30", "--set", "warmup_s=5")
    assert proc.returncode == 0 and "--engine" not in proc.stderr  # not given: no note
    proc = capsim("simulate", "scenarios/quickstart.yaml", "--engine", "fast")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --engine: expected one of auto, simpy, compiled, got 'fast'" or (
        "--engine: expected one of auto, simpy, compiled, got 'fast'" in proc.stderr and "Traceback" not in proc.stderr
    )
    # The late batching window, once SimPy-only, runs on the compiled data plane.
    proc = capsim("simulate", "scenarios/quickstart.yaml", "--json", "--set", "duration_s=30", "--set", "warmup_s=5",
                  "--set", "serving.frontend.workers=1", "--set", "serving.frontend.per_request_ms=0.5",
                  "--set", "serving.frontend.window_late_quantiles_ms=[0, 1.5]")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["engine"] == "compiled"
