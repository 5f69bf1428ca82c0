"""Run folders of each kind, written by the CLI as a user would (small runs), shared by the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsim.cli.main import main
from tests.calibration.synthetic import write_run_folder

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "scenarios" / "quickstart.yaml")
SHORT = ["--set", "duration_s=40", "--set", "warmup_s=5", "-q"]


@pytest.fixture(scope="session")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root holding the folders below."""
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def simulate_dirs(folders: Path) -> tuple[Path, Path]:
    """Two simulate folders of the quickstart: a 2 ms and a 10 ms batching window."""
    a, b = folders / "window-2ms", folders / "window-10ms"
    assert main(["simulate", QUICKSTART, *SHORT, "--out", str(a)]) == 0
    assert main(["simulate", QUICKSTART, *SHORT, "--set", "serving.batching.max_wait_ms=10", "--out", str(b)]) == 0
    return a, b


@pytest.fixture(scope="session")
def sweep_dir(folders: Path) -> Path:
    """A sweep of the quickstart over 1 and 2 replicas."""
    out = folders / "sweep"
    assert main(["sweep", QUICKSTART, "--vary", "serving.replicas=1,2", "--jobs", "1", *SHORT, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def solve_dir(folders: Path) -> Path:
    """`simulate --solve workers` of the bundled nightly batch job."""
    out = folders / "solve"
    scenario = str(ROOT / "scenarios" / "nightly-scoring-t4.yaml")
    assert main(["simulate", scenario, "--solve", "workers", "-q", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def loadtest_dir(folders: Path) -> Path:
    """A load-test run folder (the simulator playing the server; tests/calibration/synthetic.py)."""
    service = {"kind": "linear", "base_ms": 4.0, "per_item_ms": 1.0, "cv": 0.2}
    return write_run_folder(folders / "cnn-b8", [100.0, 250.0], service=service,
                            server={"max_batch_size": 8, "max_wait_ms": 2.0}, overhead_ms=1.5, duration_s=15.0,
                            model="cnn")  # fmt: skip


@pytest.fixture(scope="session")
def validate_dir(loadtest_dir: Path, folders: Path) -> Path:
    """A copy of the load test, calibrated and then validated with --plot."""
    import shutil

    out = folders / "cnn-b8-validated"
    shutil.copytree(loadtest_dir, out)
    profile = folders / "cnn.json"
    assert main(["calibrate", str(out), "-o", str(profile)]) == 0
    assert main(["validate", str(out), "--profile", str(profile), "--plot", "--replications", "1"]) == 0
    return out


@pytest.fixture(scope="session")
def plan_dir(folders: Path) -> Path:
    """`capsim plan` of the quickstart over two batching windows (skipped where plan is not built)."""
    pytest.importorskip("capsim.cli.plan")  # registers the command
    out = folders / "plan"
    assert main(["plan", QUICKSTART, "--max-wait-ms", "2,5", "--max-replicas", "4", "--jobs", "1", *SHORT,
                 "--out", str(out)]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="session")
def plan_batch_dir(folders: Path) -> Path:
    """`capsim plan` of the bundled nightly batch job (its candidate hardware: workers per hardware)."""
    pytest.importorskip("capsim.cli.plan")
    out = folders / "plan-batch"
    assert main(["plan", str(ROOT / "scenarios" / "nightly-scoring-t4.yaml"), "--jobs", "1", "-q",
                 "--out", str(out)]) == 0  # fmt: skip
    return out


LLM_SCENARIO = """
name: llm-report
duration_s: 300
warmup_s: 30
seed: 3
workload:
  arrival: {kind: poisson, rate_rps: 2.0}
  tokens:
    input: {kind: fixed, value: 512}
    output: {kind: fixed, value: 64}
model: {name: llama-3.1-8b}
hardware: {name: H100-SXM}
service: {kind: llm_linear, base_ms: 5.0, per_prefill_token_ms: 0.1, per_decode_seq_ms: 0.1}
serving:
  mode: llm
  replicas: 1
  scheduler: {max_num_seqs: 64, max_num_batched_tokens: 4096, chunked_prefill: false, block_size: 16,
              kv_cache_blocks: 2048}
slo: {ttft_ms: 500, tpot_ms: 50, percentile: 99}
"""


@pytest.fixture(scope="session")
def llm_dir(folders: Path) -> Path:
    """A simulate folder of an LLM engine (the `llm` kind)."""
    scenario = folders / "llm-report.yaml"
    scenario.write_text(LLM_SCENARIO)
    out = folders / "llm"
    assert main(["simulate", str(scenario), "-q", "--out", str(out)]) == 0
    return out
