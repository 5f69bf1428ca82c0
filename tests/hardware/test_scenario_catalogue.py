"""A scenario sees the catalogue: `--catalogue FILE`, inline `hardware.catalogue`, spot defaults."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from capsim.engine import simulate
from capsim.errors import CapsimInputError
from capsim.hardware import load_catalogue
from capsim.scenario import validate_scenario
from tests.scenario_helpers import scenario_dict

ROOT = Path(__file__).resolve().parents[2]


def _spot_scenario(hardware: dict, spot: dict, catalogue_path: Path | None = None):  # type: ignore[no-untyped-def]
    data = scenario_dict(hardware=hardware)
    data["serving"]["spot"] = spot
    return validate_scenario(data, "s.yaml", catalogue_path)


def test_spot_figures_left_out_come_from_the_catalogue() -> None:
    catalogue = load_catalogue()
    a10g = catalogue.get("A10G")
    scenario = _spot_scenario({"name": "A10G", "gpus_per_replica": 2}, {"fraction": 0.5})
    spot = scenario.serving.spot
    assert spot is not None
    assert spot.usd_per_hour == pytest.approx(2 * a10g.spot_usd_per_hour.value)
    # A10G has no reclaimed fraction of its own: the AWS-wide default applies, and AWS gives 120 s notice.
    assert spot.monthly_interruption_probability == catalogue.providers["aws"].spot_reclaimed_fraction_per_month.value
    assert spot.notice_s == 120.0
    assert spot.rate_per_s == pytest.approx(-math.log1p(-0.05) / (720 * 3600))


def test_figures_the_file_gives_win_and_the_provider_sets_the_notice() -> None:
    scenario = _spot_scenario(
        {"name": "H100-SXM"}, {"fraction": 1.0, "usd_per_hour": 3.0, "interruptions_per_hour": 0.5, "notice_s": 0}
    )
    spot = scenario.serving.spot
    assert spot is not None
    assert (spot.usd_per_hour, spot.interruptions_per_hour, spot.notice_s) == (3.0, 0.5, 0.0)
    assert spot.monthly_interruption_probability is None
    gcp = _spot_scenario(
        {"name": "H100-SXM"}, {"fraction": 1.0, "provider": "gcp", "monthly_interruption_probability": 0.1}
    )
    assert gcp.serving.spot is not None and gcp.serving.spot.notice_s == 30.0


def test_a_spot_figure_the_catalogue_lacks_names_the_field_to_set() -> None:
    with pytest.raises(CapsimInputError) as exc:
        _spot_scenario({"name": "L4"}, {"fraction": 0.5})  # the facts give no L4 spot price
    assert exc.value.source == "s.yaml" and exc.value.field == "serving.spot.usd_per_hour"
    with pytest.raises(CapsimInputError) as exc:
        _spot_scenario({"name": "A10G"}, {"fraction": 0.5, "provider": "gcp"})  # no GCP default fraction
    assert exc.value.field == "serving.spot.monthly_interruption_probability"
    with pytest.raises(CapsimInputError) as exc:
        _spot_scenario({"name": "A10G"}, {"fraction": 0.5, "provider": "oracle"})
    assert exc.value.field == "serving.spot.provider" and "unknown provider 'oracle'" in str(exc.value)
    with pytest.raises(CapsimInputError) as exc:  # custom hardware: nothing in the catalogue to fall back on
        _spot_scenario({"name": "my-gpu", "usd_per_hour": 1.0}, {"fraction": 0.5})
    assert "serving.spot.usd_per_hour" in str(exc.value)


def test_inline_catalogue_fields_override_an_entry_and_define_new_hardware() -> None:
    data = scenario_dict(hardware={"name": "L4 (AWS g6.xlarge)", "catalogue": {"on_demand_usd_per_hour": 0.5}})
    assert validate_scenario(data, "s.yaml").hardware.usd_per_hour == 0.5
    new = scenario_dict(hardware={
        "name": "MI300X", "gpus_per_replica": 2,
        "catalogue": {"kind": "gpu", "memory_gb": 192, "tdp_w": 750, "on_demand_usd_per_hour": 4.0},
    })  # fmt: skip
    hardware = validate_scenario(new, "s.yaml").hardware
    assert (hardware.usd_per_hour, hardware.tdp_w) == (8.0, 1500.0)


@pytest.mark.parametrize(
    ("catalogue", "field"),
    [
        ({"memory_gb": 192}, "hardware.catalogue.kind"),  # unknown name without kind
        ({"kind": "gpu", "memory_gb": "lots"}, "hardware.catalogue.memory_gb.value"),
        ({"kind": "gpu", "on_demand_usd_per_hour": 1, "colour": "red"}, "hardware.catalogue.colour"),
    ],
)
def test_bad_inline_catalogue_fields_are_named_as_written(catalogue: dict, field: str) -> None:
    data = scenario_dict(hardware={"name": "MI300X", "catalogue": catalogue})
    with pytest.raises(CapsimInputError) as exc:
        validate_scenario(data, "s.yaml")
    assert exc.value.source == "s.yaml" and exc.value.field == field


def test_spot_cost_uses_the_catalogue_price(tmp_path: Path) -> None:
    data = scenario_dict("duration_s=600", hardware={"name": "A10G", "usd_per_hour": 1.0})
    data["serving"]["spot"] = {"fraction": 1.0, "interruptions_per_hour": 0}
    scenario = validate_scenario(data, "s.yaml")
    cost = simulate(scenario).summary["cost"]
    a10g_spot = load_catalogue().get("A10G").spot_usd_per_hour.value
    # One replica on spot for the whole 600 s and nothing on demand.
    assert cost["spot_usd"] == pytest.approx(a10g_spot * 600 / 3600)
    assert cost["on_demand_usd"] == pytest.approx(0.0, abs=1e-12)


def _capsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT)  # fmt: skip


def test_catalogue_flag_changes_the_price_simulate_charges(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: t\nduration_s: 60\nworkload: {arrival: {kind: poisson, rate_rps: 5}}\n"
        "service: {kind: deterministic, mean_ms: 10}\nhardware: {name: L4}\nserving: {mode: realtime, replicas: 2}\n"
    )
    mine = tmp_path / "mine.yaml"
    mine.write_text("hardware:\n  L4: {on_demand_usd_per_hour: 0.5}\n")
    proc = _capsim("simulate", str(scenario), "--json", "--catalogue", str(mine))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cost"]["usd_per_hour"] == pytest.approx(1.0)  # 2 replicas × $0.50
    check = _capsim("check", str(scenario), "--catalogue", str(tmp_path / "missing.yaml"))
    assert check.returncode == 2
    assert check.stderr.strip().splitlines()[-1].endswith("missing.yaml: --catalogue: catalogue file not found")
    assert "Traceback" not in check.stderr
