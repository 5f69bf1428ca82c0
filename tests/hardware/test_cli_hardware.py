"""`capsim hardware` as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from capsim.cli.main import main
from capsim.servicetime import Profile, read_profile

ROOT = Path(__file__).resolve().parents[2]


def capsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capsim.cli.main", *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip


def test_table_lists_every_entry_with_prices_and_dates() -> None:
    proc = capsim("hardware")
    assert proc.returncode == 0, proc.stderr
    for name in ("T4", "L4", "A10G", "L40S", "A100-40GB", "A100-80GB", "H100-SXM", "H100-PCIe", "H200", "B200",
                 "c7i.xlarge"):  # fmt: skip
        assert f"│ {name} " in proc.stdout, name
    h100_row = next(line for line in proc.stdout.splitlines() if "│ H100-SXM " in line)
    assert "3350" in h100_row and "989" in h100_row and "12.29" in h100_row and "2023 to mid-2025 list" in h100_row


def test_json_and_user_catalogue(tmp_path: Path) -> None:
    extra = tmp_path / "mine.yaml"
    extra.write_text("hardware:\n  L4: {on_demand_usd_per_hour: 0.5}\n  TPU-x: {kind: gpu, memory_gb: 32}\n")
    proc = capsim("hardware", "--json", "--catalogue", str(extra))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    by_name = {entry["name"]: entry for entry in data["hardware"]}
    assert by_name["L4"]["on_demand_usd_per_hour"]["value"] == 0.5
    assert by_name["L4"]["on_demand_usd_per_hour"]["source"] == f"user catalogue {extra}"
    assert by_name["TPU-x"]["memory_gb"]["value"] == 32
    assert by_name["H100-SXM"]["fp16_tflops"] == {
        "value": 989.0,
        "source": "NVIDIA H100 datasheet, https://www.nvidia.com/en-us/data-center/h100/ "
                  "(read via Glenn Lockwood's copy)",
        "date": None, "confidence": "DOC2",
        "note": "1,979 with sparsity", "range": None,
    }  # fmt: skip
    assert data["files"] == ["capsim/hardware/catalogue.yaml", str(extra)]
    assert data["providers"]["aws"]["spot_notice_s"]["value"] == 120


def test_one_entry_shows_sources(capsys: pytest.CaptureFixture[str]) -> None:
    # In-process (the same entry point as the console script) to keep the suite fast.
    assert main(["hardware", "a10g"]) == 0
    out = capsys.readouterr().out
    assert "Baseten" in out and "g5.xlarge" in out and "estimate" in out
    assert main(["hardware", "H10"]) == 2
    assert "did you mean: H100-SXM" in capsys.readouterr().err


def test_bad_catalogue_file_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hardware:\n  H100-SXM: {tdp_w: hot}\n")
    proc = capsim("hardware", "--catalogue", str(bad))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: hardware.H100-SXM.tdp_w.value: "), proc.stderr


def test_transfer_prints_measured_against_predicted_and_writes_a_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    samples = {k: (1.0 + 0.2 * k) * rng.lognormal(0, 0.2, 300) for k in (1, 8)}
    Profile.from_samples(samples, hardware={"name": "T4"}, framework={"dtype": "float16"}).write(tmp_path / "t4.json")
    out = tmp_path / "a100.json"
    args = ["hardware", "A100-40GB", "--transfer", str(tmp_path / "t4.json"), "--flops-per-item", "1e9"]
    assert main([*args, "--overhead-ms", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "T4 → A100-40GB (extrapolated" in printed and "compute → compute" in printed
    predicted = read_profile(out)
    assert predicted.provenance["extrapolated"] is True
    assert predicted.points[0].mean_ms == pytest.approx(Profile.model_validate_json((tmp_path / "t4.json").read_text())
                                                        .points[0].mean_ms * 65 / 312)  # fmt: skip
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hardware"]["extrapolated_from"] == "T4"
    assert main([*args[:-2], "--weight-bytes", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --weight-bytes: Input should be greater than or equal to 0"
