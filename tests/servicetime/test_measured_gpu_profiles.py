"""The committed H100 profiles: they say what they were measured on, in terms the hardware
catalogue knows, so that `service.transfer` can move them to other GPUs."""

from __future__ import annotations

from pathlib import Path

import yaml

from capsim import load_scenario, simulate
from capsim.hardware.catalogue import load_catalogue
from capsim.servicetime.profile_format import read_profile
from capsim.servicetime.transfer import measured_on
from tests.scenario_helpers import scenario_dict

PROFILES = Path(__file__).resolve().parents[2] / "scenarios" / "profiles"
DTYPE_SUFFIX = {"": "float32", "-fp16": "float16", "-bf16": "bfloat16"}


def test_h100_profiles_record_the_gpu_and_name_a_catalogue_entry() -> None:
    catalogue = load_catalogue()
    paths = sorted(PROFILES.glob("*-h100*.json"))
    assert len(paths) == 9  # mlp, cnn, transformer x float32, float16, bfloat16
    for path in paths:
        profile = read_profile(path)
        assert measured_on(profile, catalogue).name == "H100-SXM", path.name
        hw = profile.hardware
        assert hw["kind"] == "cuda" and hw["device_name"] == "NVIDIA H100 80GB HBM3"
        assert hw["compute_capability"] == "9.0" and hw["multiprocessors"] == 132
        assert hw["driver_version"] and hw["cuda_runtime_version"] and hw["cudnn_version"]
        suffix = path.stem.split("-h100", 1)[1]
        assert profile.framework["dtype"] == DTYPE_SUFFIX[suffix] and profile.framework["device"] == "cuda"
        assert [p.batch_size for p in profile.points] == [1, 2, 4, 8, 16, 32, 64]


def test_the_h100_profile_moves_to_another_gpu_in_a_scenario(tmp_path: Path) -> None:
    transfer = {"model": {"flops_per_item": 1.2e8, "weight_bytes": 8.4e7}, "precision": "fp32"}
    service = {"kind": "profile", "path": str(PROFILES / "cnn-h100.json"), "transfer": transfer}
    data = scenario_dict("duration_s=20", service=service, hardware={"name": "L4"})
    (tmp_path / "l4.yaml").write_text(yaml.safe_dump(data))
    summary = simulate(load_scenario(tmp_path / "l4.yaml")).summary
    assert summary["service"]["extrapolated"] is True
