"""Price lookups and the energy model, against hand-computed values."""

from __future__ import annotations

import pytest

from capsim.errors import CapsimInputError
from capsim.hardware import (
    energy_j,
    energy_kwh,
    energy_usd,
    find_offer,
    load_catalogue,
    power_w,
    replica_usd_per_hour,
    resolve_hardware,
    spot_discount,
    unit_usd_per_hour,
)


def test_prices_per_gpu_and_per_replica() -> None:
    cat = load_catalogue()
    h100 = cat.get("H100-SXM")
    assert unit_usd_per_hour(h100) == pytest.approx(12.29)
    assert replica_usd_per_hour(h100, gpus_per_replica=4) == pytest.approx(4 * 12.29)
    assert replica_usd_per_hour(h100, 2, market="spot") == pytest.approx(2 * 19.66 / 8)
    assert spot_discount(h100) == pytest.approx(1 - 19.66 / 98.32)
    assert replica_usd_per_hour(cat.get("c7i.xlarge")) == 0.1785
    assert find_offer(h100, "P5.48XLARGE", "capacity_block").usd_per_hour == 39.33


def test_missing_prices_and_bad_replicas_are_clear_errors() -> None:
    cat = load_catalogue()
    with pytest.raises(CapsimInputError, match=r"^hardware\.spot_usd_per_hour: T4 has no spot_usd_per_hour .* spot"):
        unit_usd_per_hour(cat.get("T4"), "spot")
    with pytest.raises(CapsimInputError, match=r"hardware\.on_demand_usd_per_hour: H200 has no on_demand_usd_per_hour"):
        replica_usd_per_hour(cat.get("H200"))
    with pytest.raises(CapsimInputError, match=r"^gpus_per_replica: expected an integer >= 1, got 0"):
        replica_usd_per_hour(cat.get("L4"), gpus_per_replica=0)
    with pytest.raises(CapsimInputError, match="a replica is one instance"):
        replica_usd_per_hour(cat.get("c7i.xlarge"), gpus_per_replica=2)
    with pytest.raises(CapsimInputError, match=r"offers: g4dn\.xlarge \(on_demand\)"):
        find_offer(cat.get("T4"), "g4dn.2xlarge")


def test_energy_is_tdp_when_busy_and_the_idle_floor_otherwise() -> None:
    spec = resolve_hardware("T4", {"tdp_w": 70, "idle_power_w": 10}, load_catalogue())
    # 30 s busy at 70 W + 90 s idle at 10 W, on 2 GPUs.
    assert energy_j(30.0, 90.0, spec, gpus=2) == pytest.approx(2 * (30 * 70 + 90 * 10))
    assert power_w(0.25, spec) == pytest.approx(10 + 60 * 0.25)
    assert energy_j(30.0, 90.0, spec) == pytest.approx(power_w(0.25, spec) * 120)
    assert energy_kwh(3.6e6) == 1.0 and energy_usd(7.2e6, 0.15) == pytest.approx(0.30)
    with pytest.raises(ValueError):
        power_w(1.5, spec)


def test_energy_without_a_tdp_names_the_figure() -> None:
    with pytest.raises(CapsimInputError, match=r"^hardware\.tdp_w: c7i\.2xlarge has no tdp_w in the catalogue"):
        energy_j(1.0, 1.0, load_catalogue().get("c7i.2xlarge"))


def test_replica_energy_and_billed_cost_are_the_rules_every_mode_uses() -> None:
    from pathlib import Path
    from types import SimpleNamespace

    import yaml

    import capsim.hardware
    from capsim.hardware.cost import billed_cost, replica_energy, replica_idle_w
    from capsim.hardware.spec import DEFAULT_IDLE_FRACTION_OF_TDP

    # Two replicas billed for an hour, one of them busy half the time: 7200 s idle-floor, 1800 s at TDP.
    hw = SimpleNamespace(tdp_w=300.0, idle_w=50.0, usd_per_kwh=0.2)
    energy = replica_energy(hw, billed_replica_s=7200.0, busy_replica_s=1800.0, window_s=3600.0)
    assert energy is not None
    assert energy["joules"] == pytest.approx(300 * 1800 + 50 * 5400)
    assert energy["kwh"] == pytest.approx(energy["joules"] / 3.6e6)
    assert energy["usd"] == pytest.approx(energy["kwh"] * 0.2)
    assert energy["mean_power_w"] == pytest.approx(energy["joules"] / 3600.0)
    assert "mean_power_w" not in (replica_energy(hw, 7200.0, 1800.0) or {})
    assert replica_energy(SimpleNamespace(tdp_w=None, idle_w=None, usd_per_kwh=None), 1.0, 1.0) is None
    # Without an idle figure the default share of TDP applies, the same number the shipped catalogue assumes.
    no_idle = SimpleNamespace(tdp_w=200.0, idle_w=None, usd_per_kwh=None)
    assert replica_idle_w(no_idle) == 200.0 * DEFAULT_IDLE_FRACTION_OF_TDP
    shipped = yaml.safe_load((Path(capsim.hardware.__file__).parent / "catalogue.yaml").read_text())
    assert shipped["assumptions"]["idle_fraction_of_tdp"] == DEFAULT_IDLE_FRACTION_OF_TDP
    cost = billed_cost(4.0, on_demand_replica_s=5400.0, spot_replica_s=1800.0, spot_usd_per_hour=1.0)
    assert cost == pytest.approx({"usd": 6.0 + 0.5, "on_demand_usd": 6.0, "spot_usd": 0.5})
    assert billed_cost(4.0, 3600.0) == {"usd": 4.0, "on_demand_usd": 4.0, "spot_usd": 0.0}
