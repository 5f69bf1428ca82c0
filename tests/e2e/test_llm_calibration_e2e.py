"""The LLM measurement loop on loopback (issue 16, "Must show"): the reference LLM server (llm-tiny on
the CPU), a short streaming load-test sweep, `capsim calibrate` (white box from the paged step log,
and black box from the client's timings), `capsim validate` — every command succeeds and the
tables hold measured and simulated columns. Assertions are on behaviour, never on durations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reference_server.launch import ServerProcess
from tests.e2e.test_loadtest_llm import server  # noqa: F401  (the llm-tiny server fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CAPSIM = [sys.executable, "-m", "capsim.cli.main"]


def capsim(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CAPSIM, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_load_test_calibrate_validate(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811 (the fixture)
    run = tmp_path / "sweep"
    capsim("loadtest", "--target", server.url, "--protocol", "openai", "--input-tokens", "lognormal:60,0.5,200",
           "--output-tokens", "8", "--sweep", "1,2,3", "--duration", "6", "--warmup", "1", "--out", str(run))
    assert (run / "steps.parquet").exists()

    fit = tmp_path / "fit.json"
    out = capsim("calibrate", str(run), "-o", str(fit), "--holdout", "highest").stdout
    assert "held-out points — prediction error" in out and "meas→sim" in out
    doc = json.loads(fit.read_text())
    calibration = doc["provenance"]["calibration"]
    assert calibration["method"] == "white-box"
    assert doc["service"]["kind"] == "llm_fitted" and doc["service"]["fitted_on"]["model"] == "llm-tiny"
    assert calibration["fit_detail"]["step_fit"]["steps"] > 10
    assert [r["label"] for r in calibration["holdout"]["points"]] == ["sweep#2"]
    assert doc["scheduler"]["max_num_seqs"] == 8 and doc["scheduler"]["chunked_prefill"] is True

    validated = json.loads(capsim("validate", str(run), "--profile", str(fit), "--json").stdout)
    assert validated["format"] == "capsim-llm-validation/1" and len(validated["points"]) == 3
    for row in validated["points"]:
        for side in ("measured", "simulated"):
            assert row[side]["completed"] > 0
            for key in ("ttft_ms", "tpot_ms", "itl_ms", "latency_ms"):
                assert row[side][key]["p50"] is not None, (side, key)
            assert row[side]["throughput_rps"] > 0 and row[side]["tokens"]["output_per_s"] > 0
    table = capsim("validate", str(run), "--profile", str(fit)).stdout
    assert "TTFT p99 (ms)" in table and "measured" in table and "simulated" in table
    assert (run / "validation.json").exists()

    black = tmp_path / "black.json"
    capsim("calibrate", str(run), "-o", str(black), "--method", "black-box", "--max-evaluations", "30")
    assert json.loads(black.read_text())["provenance"]["calibration"]["method"] == "black-box"
