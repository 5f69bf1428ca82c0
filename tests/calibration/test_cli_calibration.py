"""`capsim calibrate` and `capsim validate` as a user runs them: outputs, files, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capsim.cli.main import main
from capsim.servicetime import read_profile
from tests.calibration.synthetic import write_run_folder

SERVICE = {"kind": "linear", "base_ms": 4.0, "per_item_ms": 1.0, "cv": 0.2}
SERVER = {"max_batch_size": 8, "max_wait_ms": 2.0}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A white-box sweep of three loads of a synthetic 'cnn'."""
    root = tmp_path_factory.mktemp("runs")
    return write_run_folder(root / "cnn-b8", [100.0, 250.0, 400.0], service=SERVICE, server=SERVER,
                            overhead_ms=1.5, duration_s=20.0, model="cnn")


@pytest.fixture(scope="module")
def profile_path(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("profiles") / "cnn.json"
    assert main(["calibrate", str(run_dir), "-o", str(out), "--holdout", "alternate"]) == 0
    return out


def error_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI expecting bad input: exit code 2 and exactly one line on stderr, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------- what a calibrated profile carries


def test_calibrated_profile_carries_provenance_and_held_out_error(profile_path: Path, run_dir: Path) -> None:
    profile = read_profile(profile_path)
    assert profile.model["name"] == "cnn"
    assert profile.source == "capsim calibrate (white-box)"
    calibration = profile.provenance["calibration"]
    roles = [(r["label"], r["role"]) for r in calibration["runs"]]
    assert roles == [("cnn-b8#0", "fit"), ("cnn-b8#2", "fit"), ("cnn-b8#1", "holdout")]
    assert calibration["runs"][0]["server"]["max_batch_size"] == 8
    assert calibration["overhead_ms"] == pytest.approx(1.5, rel=0.05)
    assert calibration["versions"]["load_test"] == {"python": "3"}
    assert calibration["validation"]["kind"] == "holdout"
    assert calibration["validation"]["latency_p50_max_abs"] < 0.05
    assert calibration["holdout"]["points"][0]["label"] == "cnn-b8#1"


def test_simulate_summary_shows_provenance_and_validation_error(profile_path: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: uses-calibrated\nduration_s: 20\nwarmup_s: 2\nworkload: {arrival: {kind: poisson, rate_rps: 100}}\n"
        f"service: {{kind: profile, path: {profile_path}}}\nhardware: {{name: x, usd_per_hour: 1.0}}\n"
        "serving: {mode: realtime, replicas: 1, batching: {max_batch_size: 8, max_wait_ms: 2}}\n")
    assert main(["simulate", str(scenario), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["service"]["validation"]["kind"] == "holdout"
    assert summary["service"]["provenance"]["calibration"]["method"] == "white-box"
    assert main(["simulate", str(scenario)]) == 0
    table = capsys.readouterr().out
    assert "calibrated (white-box)" in table and "held-out prediction error" in table


def test_validate_prints_writes_and_plots_the_comparison(run_dir: Path, profile_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(run_dir), "--profile", str(profile_path), "--plot"]) == 0
    out = capsys.readouterr().out
    for text in ("measured", "simulated", "latency p99 (ms)", "queue wait p50 (ms, send → batch start)",
                 "batches of 1", "throughput"):
        assert text in out
    doc = json.loads((run_dir / "validation.json").read_text())
    assert doc["format"] == "capsim-validation/1"
    assert doc["overhead_source"] == "profile provenance"
    assert [p["label"] for p in doc["points"]] == ["cnn-b8#0", "cnn-b8#1", "cnn-b8#2"]
    for point in doc["points"]:
        assert point["measured"]["latency_ms"]["p99"] > 0 and point["simulated"]["latency_ms"]["p99"] > 0
        assert abs(point["relative_error"]["latency_ms.p50"]) < 0.05
        assert point["relative_error"]["batch_size.distribution_tvd"] < 0.05
        # What the replay leaves out is reported beside it: here the ±10% jitter around 1.5 ms.
        outside = point["unmodelled"]["outside_server_ms"]
        assert outside["p50"] == pytest.approx(1.5, rel=0.03) and 1.5 < outside["p99"] <= 1.65 + 1e-6
    assert (run_dir / "validation_cdf.png").stat().st_size > 10_000
    assert not list(run_dir.glob(".*.tmp"))  # written atomically: no temporary left behind


def test_validate_record_appends_to_the_profile(run_dir: Path, profile_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "p.json"
    copy.write_text(profile_path.read_text())
    assert main(["validate", str(run_dir), "--profile", str(copy), "--record", "--replications", "1"]) == 0
    validations = read_profile(copy).provenance["validations"]
    assert len(validations) == 1 and validations[0]["run_dir"] == str(run_dir)


# ---------------------------------------------------------------- bad input


def test_empty_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    err = error_of(capsys, ["calibrate", str(tmp_path / "empty"), "-o", str(tmp_path / "p.json")])
    assert "empty run folder" in err and "requests.parquet" in err


def test_partial_run_folder_names_what_is_missing(run_dir: Path, profile_path: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "manifest.json").write_text((run_dir / "manifest.json").read_text())
    err = error_of(capsys, ["calibrate", str(partial), "-o", str(tmp_path / "p.json")])
    assert "partial run folder" in err and "summary.json" in err and "requests.parquet" in err
    (partial / "parts").mkdir()
    err = error_of(capsys, ["validate", str(partial), "--profile", str(profile_path)])
    assert "loadtest-finalize" in err


def test_missing_run_folder_and_missing_column(run_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    err = error_of(capsys, ["calibrate", str(tmp_path / "nope"), "-o", str(tmp_path / "p.json")])
    assert "run folder not found" in err
    import pandas as pd

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("manifest.json", "summary.json"):
        (broken / name).write_text((run_dir / name).read_text())
    pd.read_parquet(run_dir / "requests.parquet").drop(columns=["sent_s"]).to_parquet(broken / "requests.parquet")
    err = error_of(capsys, ["calibrate", str(broken), "-o", str(tmp_path / "p.json")])
    assert "requests.parquet" in err and "sent_s" in err


def test_profile_for_a_different_model(run_dir: Path, profile_path: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(profile_path.read_text())
    data["model"]["name"] = "mlp"
    other = tmp_path / "mlp.json"
    other.write_text(json.dumps(data))
    err = error_of(capsys, ["validate", str(run_dir), "--profile", str(other)])
    assert "'mlp'" in err and "'cnn'" in err and str(other) in err


def test_profile_with_too_few_batch_sizes(run_dir: Path, profile_path: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(profile_path.read_text())
    data["points"] = data["points"][:1]
    single = tmp_path / "single.json"
    single.write_text(json.dumps(data))
    err = error_of(capsys, ["validate", str(run_dir), "--profile", str(single)])
    assert "only batch size 1" in err and "batches up to 8" in err and "at least 2" in err


def test_runs_of_different_models_are_refused(run_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    other = write_run_folder(tmp_path / "mlp-run", [100.0], service=SERVICE, server=SERVER, overhead_ms=1.0,
                             duration_s=8.0, warmup_s=1.0, model="mlp")
    err = error_of(capsys, ["calibrate", str(run_dir), str(other), "-o", str(tmp_path / "p.json")])
    assert "different models" in err and "mlp" in err and "cnn" in err


def test_black_box_target_without_server_settings_names_the_flags(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run_folder(tmp_path / "bb", [100.0], service=SERVICE, server=SERVER, overhead_ms=1.0,
                           duration_s=8.0, warmup_s=1.0, white_box=False)
    err = error_of(capsys, ["calibrate", str(run), "-o", str(tmp_path / "p.json")])
    assert "--max-batch-size" in err and "--max-wait-ms" in err
    err = error_of(capsys, ["calibrate", str(run), "-o", str(tmp_path / "p.json"), "--method", "white-box",
                            "--max-batch-size", "8"])
    assert "batches.parquet" in err and "black-box" in err


def test_bad_flags(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "p.json")
    assert "--holdout" in error_of(capsys, ["calibrate", str(run_dir), "-o", out, "--holdout", "nothing-*"])
    assert "--method" in error_of(capsys, ["calibrate", str(run_dir), "-o", out, "--method", "magic"])
    assert "--max-wait-ms" in error_of(capsys, ["calibrate", str(run_dir), "-o", out, "--max-wait-ms", "2"])
    assert "--output" in error_of(capsys, ["calibrate", str(run_dir), "-o", str(tmp_path)])
    assert "profile file not found" in error_of(capsys, ["validate", str(run_dir), "--profile", out])


def test_profile_from_other_hardware_is_warned_about(run_dir: Path, profile_path: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(profile_path.read_text())
    data["hardware"] = {"name": "H100-SXM"}
    other = tmp_path / "gpu.json"
    other.write_text(json.dumps(data))
    assert main(["validate", str(run_dir), "--profile", str(other), "--replications", "1"]) == 0
    err = capsys.readouterr().err
    assert "measured on 'H100-SXM'" in err and "'synthetic'" in err
