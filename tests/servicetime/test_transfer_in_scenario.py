"""A profile measured on one GPU, run in a scenario on another: the service times follow the
roofline estimate and the summary says the result is extrapolated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from capsim import load_scenario, simulate
from capsim.servicetime import Profile
from tests.scenario_helpers import scenario_dict


def write_t4_profile(path: Path) -> None:
    rng = np.random.default_rng(1)
    samples = {k: rng.lognormal(np.log(4.0 + 0.8 * k), 0.1, 3000) for k in (1, 4, 16)}
    Profile.from_samples(samples, model={"name": "encoder"}, hardware={"name": "T4"}, source="test").write(path)


def test_transferred_profile_is_faster_on_a_faster_gpu_and_flagged(tmp_path: Path) -> None:
    write_t4_profile(tmp_path / "t4.json")
    service = {"kind": "profile", "path": "t4.json"}
    transfer = {"model": {"flops_per_item": 4e10, "weight_bytes": 2e8}, "precision": "fp16"}
    measured = scenario_dict("duration_s=60", service=service, hardware={"name": "T4"})
    moved = scenario_dict("duration_s=60", service={**service, "transfer": transfer}, hardware={"name": "L40S"})
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(measured))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(moved))
    on_t4, on_l40s = load_scenario(tmp_path / "a.yaml"), load_scenario(tmp_path / "b.yaml")
    # A compute-heavy model: the L40S (362 dense FP16 TFLOPS) beats the T4 (65) on every batch size.
    for k in (1, 4, 16):
        assert on_l40s.service.mean_s(k) < on_t4.service.mean_s(k)
    summary = simulate(on_l40s).summary
    assert summary["service"]["extrapolated"] is True
    assert simulate(on_t4).summary["service"]["extrapolated"] is False


def test_transfer_needs_known_hardware(tmp_path: Path) -> None:
    from capsim.errors import CapsimInputError

    write_t4_profile(tmp_path / "t4.json")
    transfer = {"model": {"flops_per_item": 4e10}}
    data = scenario_dict(service={"kind": "profile", "path": "t4.json", "transfer": transfer},
                         hardware={"name": "my-box", "usd_per_hour": 1.0})  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CapsimInputError, match="unknown hardware 'my-box'"):
        load_scenario(tmp_path / "c.yaml")
