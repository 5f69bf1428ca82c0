"""The run budget (capsim/budget.py): a run that would exceed the machine is refused before it starts,
with one line naming the field that drives it, and `capsim check` allocates nothing in proportion to
a field's value."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from capsim.budget import estimate_run, estimate_simulation, over_budget
from capsim.cli.main import main
from capsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
NIGHTLY = ROOT / "scenarios" / "nightly-scoring-t4.yaml"
ADDRESS_SPACE_BYTES = 2 * 1024**3  # the whole process, interpreter and libraries included


def _limited_address_space() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))


def capsim_limited(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """`capsim ARGS` in a process that cannot take more than 2 GB; (result, wall seconds)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True, timeout=120, check=False,
        cwd=ROOT, preexec_fn=_limited_address_space, env=env,
    )  # fmt: skip
    return proc, time.monotonic() - started


def test_a_billion_requests_per_second_is_refused_at_once_in_one_line() -> None:
    # Before the budget this run grew to 7.6 GB in 40 s (no end in sight); under a 2 GB limit it died.
    proc, wall_s = capsim_limited("simulate", str(QUICKSTART), "--set", "workload.arrival.rate_rps=1e9")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "workload.arrival.rate_rps" in lines[0] and "--force" in lines[0]
    assert "quickstart.yaml" in lines[0]
    assert wall_s < 60  # start-up plus arithmetic; the refused run itself would take days


def test_check_with_a_billion_max_batch_size_answers_without_the_table() -> None:
    # Before: the compiled engine's batch-time table (max_batch_size + 1 rows) was built to ask whether
    # one exists: 6.2 GB in 30 s.
    proc, wall_s = capsim_limited("check", str(QUICKSTART), "--set", "serving.batching.max_batch_size=1000000000")
    assert proc.returncode == 0, proc.stderr
    assert "run budget:" in proc.stdout
    assert wall_s < 60
    # ... and the compiled engine, whose arrays that table and each executor's batch are, is refused.
    proc, _ = capsim_limited("simulate", str(QUICKSTART), "--set", "serving.batching.max_batch_size=1000000000")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "serving.batching.max_batch_size" in proc.stderr


def test_check_of_a_huge_batch_job_counts_instead_of_listing() -> None:
    # makespan_floor_s walked every batch of every partition: 10^15 items in batches of 1 never ended.
    proc, wall_s = capsim_limited("check", str(NIGHTLY), "--set", "serving.batch_size=1",
                                  "--set", "serving.dataset.items=1000000000000000",
                                  "--set", "serving.dataset.partitions=1000000000000")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "makespan lower bound" in proc.stdout
    assert "serving.dataset.partitions" in proc.stdout  # the budget names what would not fit
    assert wall_s < 60


def test_estimate_allocates_nothing_proportional_to_field_values() -> None:
    huge = ["workload.arrival.rate_rps=1e9", "serving.batching.max_batch_size=1000000000",
            "serving.replicas=1000000", "serving.instances_per_replica=1000"]  # fmt: skip
    scenario = load_scenario(QUICKSTART, huge)
    tracemalloc.start()
    try:
        estimate = estimate_run(scenario, replications=1000, keep_requests=True, engine="compiled")
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 1_000_000
    assert estimate.memory_bytes > 1e15 and estimate.time_s > 1e6


def test_front_end_workers_are_counted(capsys: pytest.CaptureFixture[str]) -> None:
    # Each replica kept a list of 10^9 free times: MemoryError (exit 1) under any limit.
    args = ["simulate", str(QUICKSTART), "--set", "serving.frontend={workers: 1000000000, per_request_ms: 0.3}"]
    assert main(args) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "serving.frontend.workers" in line


def test_estimate_follows_the_settings_that_drive_it() -> None:
    base = load_scenario(QUICKSTART, [])
    double = load_scenario(QUICKSTART, ["workload.arrival.rate_rps=600"])
    logged, bounded = estimate_run(base, keep_requests=True), estimate_run(base, keep_requests=False)
    assert logged.requests == pytest.approx(300 * 600)
    assert estimate_run(double).memory_bytes > logged.memory_bytes > bounded.memory_bytes
    assert estimate_run(base, replications=10).time_s == pytest.approx(10 * logged.time_s)
    # An overloaded fleet keeps its backlog in either mode; a queue capacity or a timeout bounds it.
    overloaded = load_scenario(QUICKSTART, ["workload.arrival.rate_rps=100000"])
    capped = load_scenario(QUICKSTART, ["workload.arrival.rate_rps=100000", "serving.queue_capacity=100"])
    timed = load_scenario(QUICKSTART, ["workload.arrival.rate_rps=100000", "serving.timeout_ms=100"])
    backlog = estimate_run(overloaded, keep_requests=False).memory_bytes
    assert backlog > 1e9  # ~97k rps piling up for 600 s
    assert estimate_run(capped, keep_requests=False).memory_bytes < backlog / 1000
    assert estimate_run(timed, keep_requests=False).memory_bytes < backlog / 1000


def test_bundled_scenarios_fit_the_budget_with_default_flags() -> None:
    from capsim.cli.simulate import keep_every_request

    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        scenario = load_scenario(path, [])
        estimate = estimate_simulation(scenario, 1, keep_every_request(scenario, None))
        assert over_budget(estimate) is None, (path.name, estimate.describe())


def test_force_lets_an_over_budget_run_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAPSIM_MAX_MEMORY_BYTES", "1000000")  # 1 MB: this run's request log alone needs ~2 MB
    args = ["simulate", str(QUICKSTART), "--json", "--request-log",
            "--set", "duration_s=60", "--set", "warmup_s=0"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err and "workload.arrival.rate_rps" in err
    assert main([*args, "--force"]) == 0
    assert '"scenario": "quickstart"' in capsys.readouterr().out


def test_time_budget_and_sweep(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CAPSIM_MAX_RUN_S", "0.001")
    assert main(["sweep", str(QUICKSTART), "--vary", "serving.replicas=1,2", "--jobs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "this sweep would take" in err and "--force" in err


def test_bad_budget_override_is_an_input_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAPSIM_MAX_RUN_S", "soon")
    assert main(["simulate", str(QUICKSTART), "--set", "duration_s=20", "--set", "warmup_s=0"]) == 2
    assert "CAPSIM_MAX_RUN_S" in capsys.readouterr().err


def test_a_tiny_autoscaler_period_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # Each sync is a control-plane event: 1 us over an hour was 3.6e9 of them (it ran past any timeout).
    streaming = ROOT / "scenarios" / "iot-anomaly-streaming.yaml"
    args = ["simulate", str(streaming), "--set", "serving.autoscaling.hpa_sync_period_s=0.000001",
            "--set", "duration_s=3600"]  # fmt: skip
    assert main(args) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "serving.autoscaling.hpa_sync_period_s" in line


def test_validate_replay_checks_the_budget(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = ROOT / "benchmarks" / "data" / "h100" / "runs" / "cnn-b32-w2-u30"
    profile = ROOT / "scenarios" / "profiles" / "cnn-h100.json"
    monkeypatch.setenv("CAPSIM_MAX_RUN_S", "0.0001")
    assert main(["validate", str(run), "--profile", str(profile)]) == 2
    lines = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("warning")]
    assert len(lines) == 1 and str(run) in lines[0] and "--replications" in lines[0], lines
