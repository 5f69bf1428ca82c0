"""`service.transfer` without `model:` uses the cost the profile recorded; a poorly explained transfer warns."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsim.errors import CapsimInputError
from capsim.hardware import load_catalogue
from capsim.scenario import validate_scenario
from capsim.servicetime.profile_format import read_profile
from capsim.servicetime.transfer import TransferSpec, apply_transfer, declared_cost
from capsim.stability import extrapolation_warnings

PROFILES = Path(__file__).resolve().parents[2] / "scenarios" / "profiles"


def test_the_recorded_cost_drives_the_transfer() -> None:
    profile = read_profile(PROFILES / "cnn-h100.json")
    cost = declared_cost(profile)
    assert cost.flops_per_item == profile.model["cost"]["flops_per_item"] and cost.bytes_precision == "fp32"
    catalogue = load_catalogue()
    implicit = apply_transfer(profile, TransferSpec(precision="fp16"), catalogue.get("L4"), catalogue)
    explicit = apply_transfer(profile, TransferSpec(precision="fp16", model=cost), catalogue.get("L4"), catalogue)
    assert implicit.points == explicit.points
    # The L4 has a fraction of the H100's bandwidth and compute: no batch gets faster.
    assert all(t.mean_ms >= m.mean_ms for t, m in zip(implicit.points, profile.points, strict=True))


def test_a_profile_without_a_cost_asks_for_one() -> None:
    profile = read_profile(PROFILES / "cnn-h100.json")
    bare = profile.model_copy(update={"model": {k: v for k, v in profile.model.items() if k != "cost"}})
    catalogue = load_catalogue()
    with pytest.raises(CapsimInputError) as exc:
        apply_transfer(bare, TransferSpec(), catalogue.get("L4"), catalogue)
    assert exc.value.field == "service.transfer.model" and "flops_per_item" in exc.value.detail


def test_a_launch_bound_profile_warns_when_transferred() -> None:
    data = {
        "name": "t", "duration_s": 10,
        "workload": {"arrival": {"kind": "poisson", "rate_rps": 10}},
        "service": {"kind": "profile", "path": str(PROFILES / "cnn-h100.json"), "transfer": {"precision": "fp16"}},
        "hardware": {"name": "L4"},
        "serving": {"mode": "realtime", "replicas": 1},
    }  # fmt: skip
    from capsim.scenario.catalogue import transfer_service

    scenario = transfer_service(validate_scenario(data, "t.yaml"))
    share = scenario.service.profile.provenance["roofline_share"]  # type: ignore[union-attr]
    assert 0 < share < 0.1  # the CNN's batches on an H100 are ~7% device work at best
    [warning] = extrapolation_warnings(scenario)
    assert "H100-SXM" in warning and "L4" in warning
