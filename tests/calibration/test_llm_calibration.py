"""LLM calibration: the step-time fit from a step log, the black box through the simulator, validate
on a run the simulator made, the CLI and its one-line errors (capsim/calibration/llm_*.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capsim.calibration.llm_calibrate import calibrate_llm
from capsim.calibration.llm_runfolder import read_llm_points
from capsim.calibration.llm_stepfit import fit_step_times, step_errors
from capsim.calibration.llm_steplog import read_step_log
from capsim.calibration.llm_validate import validate_llm_run
from capsim.cli.main import main
from capsim.engine import simulate
from capsim.errors import CapsimInputError
from capsim.scenario import Scenario
from capsim.servicetime.llm_service import LlmFittedService
from tests.calibration.llm_synthetic import COEFFICIENTS, synthetic_steps, write_llm_run, write_steps_jsonl
from tests.calibration.test_cli_calibration import error_of

FULL = {"base_ms": 3.0, "per_prefill_token_ms": 0.015, "per_decode_seq_ms": 0.2, "per_context_token_ms": 0.0004,
        "per_request_ms": 0.5}  # fmt: skip
RATES = (2.0, 5.0, 8.0)
OVERHEAD_MS = 2.0


def _log(tmp_path: Path, steps: pd.DataFrame) -> pd.DataFrame:
    path = tmp_path / "steps.jsonl"
    write_steps_jsonl(steps, path)
    return read_step_log(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three loads of an engine with COEFFICIENTS and 2 ms outside it, each with its step log."""
    root = tmp_path_factory.mktemp("llm-runs")
    dirs = []
    for i, rate in enumerate(RATES):
        start_s = 1_796_000_000.0 + 1000.0 * i
        run = write_llm_run(root / f"llm-{rate:g}rps", rate, COEFFICIENTS, overhead_ms=OVERHEAD_MS, seed=i + 1,
                            start_s=start_s)  # fmt: skip
        steps = synthetic_steps(COEFFICIENTS, 1500, 0.02, seed=10 + i)
        shift = start_s + 1.0 - steps["start_s"].iloc[0]
        steps["start_s"] += shift
        steps["end_s"] += shift
        write_steps_jsonl(steps, run / "steps.jsonl")
        dirs.append(run)
    return dirs


# ------------------------------------------------------------------------------- white box: step fit


def test_step_fit_recovers_every_coefficient_within_tolerance(tmp_path: Path) -> None:
    steps = _log(tmp_path, synthetic_steps(FULL, 3000, 0.03, seed=1))
    fit = fit_step_times(steps)
    assert fit.terms == list(FULL)
    for name, true in FULL.items():
        assert fit.coefficients_ms[name] == pytest.approx(true, rel=0.1), name
    residuals = step_errors(fit.service(), steps)
    # 3% Gaussian noise: the median |relative error| of a right model is 0.674 × 3%.
    assert residuals["abs_rel_p50"] == pytest.approx(0.674 * 0.03, rel=0.15)
    assert abs(residuals["bias_ms"]) < 0.01 * residuals["mean_ms"]


def test_held_out_steps_error_is_the_noise_and_a_wrong_model_shows(tmp_path: Path) -> None:
    fit = fit_step_times(_log(tmp_path, synthetic_steps(FULL, 2000, 0.02, seed=2)))
    held = step_errors(fit.service(), _log(tmp_path, synthetic_steps(FULL, 2000, 0.02, seed=3)))
    assert held["abs_rel_p90"] < 0.05
    wrong = fit.service().model_copy(update={"per_decode_seq_ms": 2 * FULL["per_decode_seq_ms"]})
    assert step_errors(wrong, _log(tmp_path, synthetic_steps(FULL, 2000, 0.02, seed=3)))["abs_rel_p50"] > 0.1


def test_a_term_the_log_cannot_separate_is_dropped_not_guessed(tmp_path: Path) -> None:
    steps = synthetic_steps(FULL, 1000, 0.0, seed=4)
    steps["prefill_tokens"] = 128.0 * steps["new_seqs"]  # every prompt 128 tokens: N = T / 128
    steps["context_tokens"] = 0.0  # and no context term at all
    exact_ms = FULL["base_ms"] + FULL["per_prefill_token_ms"] * steps["prefill_tokens"] + \
        FULL["per_decode_seq_ms"] * steps["decode_seqs"]  # fmt: skip
    steps["duration_ms"] = exact_ms
    fit = fit_step_times(_log(tmp_path, steps))
    assert set(fit.dropped) == {"per_context_token_ms", "per_request_ms"}
    assert "linear combination" in fit.dropped["per_request_ms"]
    assert fit.coefficients_ms["per_request_ms"] == 0.0
    assert fit.coefficients_ms["per_prefill_token_ms"] == pytest.approx(FULL["per_prefill_token_ms"], rel=1e-6)


def test_step_log_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"start_s": 1, "end_s": 2}\n{"oops"\n{"start_s": 3}\n')
    with pytest.raises(CapsimInputError, match="line 2 is not JSON"):
        read_step_log(bad)
    bad.write_text('{"start_s": 1, "end_s": 2, "prefill_tokens": 3, "decode_seqs": 1, "context_tokens": 4}\n')
    with pytest.raises(CapsimInputError, match="new_seqs missing"):
        read_step_log(bad)
    with pytest.raises(CapsimInputError, match="needs at least"):
        fit_step_times(_log(tmp_path, synthetic_steps(FULL, 5, 0.0, seed=5)))


# --------------------------------------------------------------------- replay, validate, calibrate


def test_validate_on_a_run_the_simulator_made_has_no_error(runs: list[Path], tmp_path: Path) -> None:
    fit = tmp_path / "true.json"
    fit.write_text(json.dumps({"service": {"kind": "llm_linear", **COEFFICIENTS}, "overhead_ms": OVERHEAD_MS}))
    doc = validate_llm_run(runs[1], fit)
    (row,) = doc["points"]
    errors = row["relative_error"]
    for key in ("ttft_ms", "tpot_ms", "latency_ms"):
        for sub in ("mean", "p50", "p90", "p99"):
            assert abs(errors[f"{key}.{sub}"]) < 1e-4, (key, sub)  # epoch-second rounding
    for key in ("throughput_rps", "tokens.input_per_s", "tokens.output_per_s", "itl_ms.mean"):
        assert abs(errors[key]) < 1e-3, key  # the ITL mean: the run's float32 gaps
    assert row["measured"]["completed"] == row["measured"]["requests"] > 200


def test_white_box_calibration_recovers_the_engine_and_its_overhead(runs: list[Path]) -> None:
    result = calibrate_llm(runs, holdout="alternate")
    assert result.method == "white-box"
    service = result.document["service"]
    for name, true in COEFFICIENTS.items():
        assert service[name] == pytest.approx(true, rel=0.05), name
    assert result.document["overhead_ms"] == pytest.approx(OVERHEAD_MS, abs=0.3)
    assert [r["label"] for r in result.holdout_rows] == ["llm-5rps"]
    held = result.holdout_errors
    assert held is not None and held["ttft_ms.p50"]["max_abs"] < 0.05 and held["tpot_ms.p50"]["max_abs"] < 0.05
    detail = result.document["provenance"]["calibration"]["fit_detail"]
    assert detail["step_holdout"]["llm-5rps"]["abs_rel_p90"] < 0.05
    LlmFittedService.model_validate(service)  # what a scenario's service: takes
    assert service["fitted_on"]["model"] == "llm-tiny" and service["fitted_on"]["hardware"] == "cpu-2core"
    # ...and a scenario on the fitted hardware runs with it: a lone request's TTFT is one prefill step
    scenario = Scenario.model_validate({
        "name": "fitted", "duration_s": 10.0, "seed": 1,
        "workload": {"arrival": {"kind": "constant", "rate_rps": 0.2},
                     "tokens": {"input": {"kind": "fixed", "value": 100}, "output": {"kind": "fixed", "value": 4}}},
        "service": service, "hardware": {"name": "cpu-2core", "usd_per_hour": 0.1, "catalogue": {"kind": "cpu"}},
        "serving": {"mode": "llm", "replicas": 1, "scheduler": result.document["scheduler"],
                    "cold_start": {"model_load_s": {"kind": "fixed", "value_s": 0.0}}}})  # fmt: skip
    prefill_ms = service["base_ms"] + 100 * service["per_prefill_token_ms"] + 100 * service["per_context_token_ms"] \
        + service["per_request_ms"]  # fmt: skip
    assert simulate(scenario).summary["ttft_ms"]["p50"] == pytest.approx(prefill_ms, rel=1e-6)


@pytest.mark.slow
def test_black_box_recovers_the_coefficients_from_client_timings(runs: list[Path]) -> None:
    result = calibrate_llm(runs, method="black-box", holdout="alternate")
    values = result.document["provenance"]["calibration"]["fit_detail"]["black_box"]["values_ms"]
    # Measured when written: base −2%, per prefill token −7%, per decoding sequence +9%, overhead +18%
    # (the overhead and the prefill time trade against each other; docs/validation.md).
    assert values["base_ms"] == pytest.approx(COEFFICIENTS["base_ms"], rel=0.1)
    assert values["per_prefill_token_ms"] == pytest.approx(COEFFICIENTS["per_prefill_token_ms"], rel=0.15)
    assert values["per_decode_seq_ms"] == pytest.approx(COEFFICIENTS["per_decode_seq_ms"], rel=0.2)
    assert values["overhead_ms"] == pytest.approx(OVERHEAD_MS, rel=0.25)
    held = result.holdout_errors
    assert held is not None
    for key in ("ttft_ms.p50", "tpot_ms.p50", "latency_ms.p50", "throughput_rps"):
        assert held["targets_met"][key], key


def test_holdout_by_configuration_keys_on_the_engine(runs: list[Path], tmp_path: Path) -> None:
    other = write_llm_run(tmp_path / "llm-nocp", 4.0, COEFFICIENTS, overhead_ms=OVERHEAD_MS, seed=7,
                          scheduler={"enable_chunked_prefill": False, "max_num_batched_tokens": 1024})  # fmt: skip
    points = read_llm_points([*runs, other], step_log=runs[0] / "steps.jsonl")
    assert {p.config_key for p in points} == {"s32-t512-cp", "s32-t1024-nocp"}
    result = calibrate_llm([*runs, other], method="black-box", holdout="server:*nocp", max_evaluations=30)
    assert [r["label"] for r in result.holdout_rows] == ["llm-nocp"]


# ------------------------------------------------------------------------------------------- CLI


def test_cli_calibrate_then_validate(runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fit = tmp_path / "fit.json"
    assert main(["calibrate", *map(str, runs), "-o", str(fit), "--holdout", "highest"]) == 0
    out = capsys.readouterr().out
    assert "held-out points — prediction error" in out and "llm_fitted" in out
    assert json.loads(fit.read_text())["format"] == "capsim-llm-fit/1"
    assert main(["validate", str(runs[0]), "--profile", str(fit), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "capsim-llm-validation/1"
    assert set(doc["points"][0]["measured"]) >= {"ttft_ms", "tpot_ms", "itl_ms", "latency_ms", "throughput_rps",
                                                 "tokens"}  # fmt: skip
    assert (runs[0] / "validation.json").exists()


def test_bad_folders_and_flags_are_one_line(runs: list[Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = str(tmp_path / "fit.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty run folder" in error_of(capsys, ["calibrate", str(empty), "-o", out, "--kind", "llm"])
    assert "--kind" in error_of(capsys, ["calibrate", str(runs[0]), "-o", out, "--kind", "gpu"])
    assert "--max-batch-size" in error_of(capsys, ["calibrate", str(runs[0]), "-o", out, "--max-batch-size", "8"])
    bare = write_llm_run(tmp_path / "no-steps", 3.0, COEFFICIENTS, duration_s=20.0, warmup_s=5.0)
    assert "per-step log" in error_of(capsys, ["calibrate", str(bare), "-o", out, "--method", "white-box"])
    manifest = json.loads((bare / "manifest.json").read_text())
    del manifest["target"]["server_config"]
    (bare / "manifest.json").write_text(json.dumps(manifest))
    assert "--scheduler" in error_of(capsys, ["calibrate", str(bare), "-o", out])
    assert "--scheduler" in error_of(capsys, ["calibrate", str(bare), "-o", out, "--scheduler", "max_num_seqs"])
    true_fit = tmp_path / "true.json"
    true_fit.write_text(json.dumps({"service": {"kind": "llm_linear", **COEFFICIENTS}}))
    settings = "max_num_seqs=32, max_num_batched_tokens=512, kv_cache_blocks=2048, chunked_prefill=true"
    assert main(["validate", str(bare), "--profile", str(true_fit), "--scheduler", settings, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["points"]
    assert abs(row["relative_error"]["tpot_ms.p50"]) < 1e-4  # the flag's engine is the one that ran
    not_a_fit = tmp_path / "x.json"
    not_a_fit.write_text(json.dumps({"service": {"kind": "linear", "base_ms": 1}}))
    assert "llm_fitted" in error_of(capsys, ["validate", str(runs[0]), "--profile", str(not_a_fit)])
    validate = ["validate", str(runs[0]), "--profile", str(not_a_fit)]
    assert "--plot" in error_of(capsys, [*validate, "--plot"])
    assert "--record" in error_of(capsys, [*validate, "--record"])
    missing = str(tmp_path / "nowhere.jsonl")
    assert "step log not found" in error_of(capsys, ["calibrate", str(runs[0]), "-o", out, "--step-log", missing])


def test_step_log_flag_assigns_steps_by_time(runs: list[Path]) -> None:
    points = read_llm_points(runs[:1], step_log=runs[0] / "steps.jsonl")
    assert points[0].steps is not None and len(points[0].steps) == 1500
    assert read_llm_points(runs[1:2], step_log=runs[0] / "steps.jsonl")[0].steps is None
    assert np.isfinite(points[0].token_counts()[0]).all()
