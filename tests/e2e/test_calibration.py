"""End to end on loopback: a short real load test against the reference server, then `capsim
calibrate` (white box, one load held out) and `capsim validate` on the run, all as subprocesses.

The MLP is served with 5 ms added to every batch (`--extra-latency-ms`), so that batches of several
requests form at modest rates and the machine's speed hardly matters. Assertions are about what the
commands produce, not about accuracy (that is the study's job: docs/validation.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference_server.launch import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def capsim(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout_s, cwd=REPO)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    args = ["--model", "mlp", "--max-batch-size", "8", "--max-wait-ms", "1", "--extra-latency-ms", "5",
            "--device", "cpu", "--torch-threads", "1", "--no-nvml"]
    with ServerProcess(args, log_dir=tmp_path_factory.mktemp("server-logs")) as proc:
        yield proc.url


def test_loadtest_calibrate_validate(tmp_path: Path, server: str) -> None:
    run = tmp_path / "run"
    done = capsim("loadtest", "--target", server, "--model", "mlp", "--arrival", "poisson", "--sweep", "60,150",
                  "--duration", "8", "--warmup", "2", "--out", str(run))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["target"]["server_config"]["config"]["max_batch_size"] == 8  # what the replay is built from

    profile = tmp_path / "mlp.json"
    done = capsim("calibrate", str(run), "-o", str(profile), "--holdout", "alternate")
    assert done.returncode == 0, done.stderr
    assert "held out:" in done.stdout and "run#1" in done.stdout
    calibration = json.loads(profile.read_text())["provenance"]["calibration"]
    assert calibration["method"] == "white-box"
    assert [r["role"] for r in calibration["runs"]] == ["fit", "holdout"]
    assert calibration["hardware"]["server"]["device"] == "cpu"
    assert calibration["overhead_ms"] > 0
    # Every batch took at least the added 5 ms: the white-box profile saw it.
    assert min(p["quantiles_ms"][0] for p in json.loads(profile.read_text())["points"]) >= 5.0

    done = capsim("validate", str(run), "--profile", str(profile), "--plot")
    assert done.returncode == 0, done.stderr
    for column in ("measured", "simulated", "error"):
        assert column in done.stdout
    doc = json.loads((run / "validation.json").read_text())
    assert len(doc["points"]) == 2
    for point in doc["points"]:
        for side in ("measured", "simulated"):
            stats = point[side]
            assert stats["throughput_rps"] > 0 and stats["latency_ms"]["p50"] > 5.0
            assert stats["batch_size"]["distribution"]
        assert point["relative_error"]["latency_ms.p50"] is not None
    assert (run / "validation_cdf.png").is_file()
