"""The shipped catalogue, user files and inline overrides, and name lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim.errors import CapsimInputError
from capsim.hardware import load_catalogue, normalize_name, resolve_hardware

REQUIRED_GPUS = ["T4", "L4", "A10G", "L40S", "A100-40GB", "A100-80GB", "H100-SXM", "H100-PCIe", "H200", "B200"]
REQUIRED_CPUS = ["c7i.xlarge", "c7i.2xlarge", "c7i.4xlarge", "c3-standard-8"]
CONFIDENCES = {"SRC", "DOC2", "3P", "MEM", "unverified", "estimate", "user"}
SHIPPED_YAML = Path(__file__).resolve().parents[2] / "capsim" / "hardware" / "catalogue.yaml"


def write(tmp_path: Path, data: object, name: str = "extra.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_shipped_catalogue_has_every_required_entry() -> None:
    cat = load_catalogue()
    assert set(REQUIRED_GPUS + REQUIRED_CPUS) <= set(cat.names())
    for name in REQUIRED_GPUS:
        spec = cat.get(name)
        assert spec.kind == "gpu"
        for field in ("memory_gb", "memory_bandwidth_gbps", "fp16_tflops", "fp32_tflops", "tdp_w"):
            assert getattr(spec, field).value is not None, (name, field)
    assert all(cat.get(name).kind == "cpu" for name in REQUIRED_CPUS)


def test_every_figure_has_a_source_and_every_written_null_a_note() -> None:
    cat = load_catalogue()
    for spec in cat:
        assert spec.spec_source is not None and spec.spec_source.source, spec.name
        for field, figure in spec.figures().items():
            if figure.value is not None:
                assert figure.source and figure.confidence in CONFIDENCES, (spec.name, field)
        for offer in spec.offers:
            assert offer.source and offer.confidence in CONFIDENCES, (spec.name, offer.instance_type)
    # Every null the file writes explains itself (the facts give no number, and why).
    raw = yaml.safe_load(SHIPPED_YAML.read_text())["hardware"]
    for name, entry in raw.items():
        for field, value in entry.items():
            if isinstance(value, dict) and "value" in value and value["value"] is None:
                assert value.get("note"), (name, field)
            assert value is not None, (name, field)  # a bare null would carry no note


def test_figures_match_the_facts_file() -> None:
    cat = load_catalogue()
    h100 = cat.get("H100-SXM")
    assert (h100.memory_bandwidth_gbps.value, h100.fp16_tflops.value, h100.fp8_tflops.value) == (3350, 989, 1979)
    assert h100.spec_source is not None and h100.spec_source.confidence == "DOC2"
    assert h100.on_demand_usd_per_hour.value == pytest.approx(98.32 / 8)
    assert h100.on_demand_usd_per_hour.date == "2023 to mid-2025 list"
    assert h100.spot_usd_per_hour.value == pytest.approx(19.66 / 8)
    assert cat.get("A100-40GB").on_demand_usd_per_hour.value == pytest.approx(32.7726 / 8)
    assert cat.get("T4").fp8_tflops.value is None and cat.get("T4").fp8_tflops.note
    a10g = cat.get("A10G")
    assert a10g.fp16_tflops.confidence == "unverified" and a10g.int8_tops.value is None
    assert a10g.spot_usd_per_hour.value == 0.40 and a10g.offers[1].range_usd_per_hour == (0.30, 0.50)
    assert cat.get("H200").on_demand_usd_per_hour.value is None  # the facts give only a Capacity Block rate
    assert cat.get("c7i.xlarge").on_demand_usd_per_hour.value == 0.1785
    # Capacity Block dates are strings exactly as the facts give them, not parsed dates.
    assert any(o.date == "rates valid until 2025-01-01" for o in h100.offers)


def test_idle_power_is_a_marked_estimate_from_tdp() -> None:
    cat = load_catalogue()
    t4 = cat.get("T4")
    assert t4.idle_power_w.value == pytest.approx(cat.idle_fraction_of_tdp * 70)
    assert t4.idle_power_w.confidence == "estimate" and "assumption" in (t4.idle_power_w.source or "")
    assert cat.get("c7i.2xlarge").idle_power_w.value is None  # no TDP, no estimate


@pytest.mark.parametrize("spelling", ["H100-SXM", "h100_sxm", "H100 SXM", "h100sxm", "H100-SXM5", "p5.48xlarge"])
def test_names_match_loosely(spelling: str) -> None:
    assert load_catalogue().get(spelling).name == "H100-SXM"


def test_scenario_style_names_with_a_remark_resolve() -> None:
    cat = load_catalogue()
    assert cat.get("L4 (AWS g6.xlarge)").name == "L4"
    assert cat.get("g5.xlarge").name == "A10G"
    assert normalize_name("A100_40 GB") == "a10040gb"


def test_unknown_name_suggests_the_nearest() -> None:
    cat = load_catalogue()
    with pytest.raises(CapsimInputError) as err:
        cat.get("H10")
    line = err.value.one_line()
    assert line.startswith("hardware.name: unknown hardware 'H10' (did you mean: ")
    assert "H100-SXM" in line and "H100-PCIe" in line and "\n" not in line
    with pytest.raises(CapsimInputError, match="did you mean: A100-40GB"):
        cat.get("A100-4")
    with pytest.raises(CapsimInputError, match="L40S"):
        cat.get("L40")


def test_user_file_overrides_field_by_field_and_extends(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "hardware": {
            "l4": {"on_demand_usd_per_hour": 0.70,
                   "tdp_w": {"value": 75, "source": "my nvidia-smi", "confidence": "user"}},
            "MI300X": {"kind": "gpu", "memory_gb": 192, "memory_bandwidth_gbps": 5300, "fp16_tflops": 1307,
                       "spec_source": {"source": "my notes", "confidence": "MEM"}},
        }
    })  # fmt: skip
    cat = load_catalogue(path)
    l4 = cat.get("L4")
    assert l4.on_demand_usd_per_hour.value == 0.70
    # The override carries the user file as its source, never the shipped entry's.
    price = l4.on_demand_usd_per_hour
    assert price.source == f"user catalogue {path}" and price.confidence == "user"
    assert l4.tdp_w.source == "my nvidia-smi" and l4.idle_power_w.value == pytest.approx(0.15 * 75)
    assert l4.memory_bandwidth_gbps.value == 300 and l4.memory_bandwidth_gbps.confidence == "DOC2"  # untouched
    new = cat.get("mi300x")
    assert new.memory_bandwidth_gbps.value == 5300 and new.memory_bandwidth_gbps.source == "my notes"
    assert cat.names()[-1] == "MI300X" and cat.files[-1] == str(path)


def test_user_file_can_name_an_entry_by_alias_and_add_offers(tmp_path: Path) -> None:
    offer = {"provider": "aws", "instance_type": "p5.48xlarge", "gpus": 8, "market": "on_demand",
             "usd_per_hour": 31.2, "source": "my invoice", "date": "2026-10", "confidence": "user"}  # fmt: skip
    cat = load_catalogue(write(tmp_path, {"hardware": {"H100_SXM5": {"offers": [offer]}}}))
    h100 = cat.get("H100-SXM")
    assert h100.on_demand_usd_per_hour.value == pytest.approx(3.9)
    assert h100.spot_usd_per_hour.value is None  # the user's offers replace the shipped list
    assert "H100_SXM5" not in cat.names()


def test_inline_entries_extend_the_catalogue() -> None:
    cat = load_catalogue(inline={"cpu-small": {"kind": "cpu", "on_demand_usd_per_hour": 0.1}})
    spec = cat.get("cpu-small")
    assert spec.on_demand_usd_per_hour.value == 0.1 and spec.on_demand_usd_per_hour.source == "inline hardware entry"


def test_resolve_hardware_applies_overrides_and_rederives() -> None:
    cat = load_catalogue()
    spec = resolve_hardware("a10g", {"tdp_w": 150, "spot_usd_per_hour": 0.35}, cat)
    assert spec.name == "A10G" and spec.tdp_w.value == 150 and spec.tdp_w.confidence == "user"
    assert spec.idle_power_w.value == pytest.approx(0.15 * 150)
    assert spec.spot_usd_per_hour.value == 0.35 and spec.on_demand_usd_per_hour.value == 1.006
    assert cat.get("A10G").tdp_w.value == 300  # the catalogue itself is unchanged
    custom = resolve_hardware("cpu-small", {"kind": "cpu", "on_demand_usd_per_hour": 0.10}, cat)
    assert custom.name == "cpu-small" and custom.on_demand_usd_per_hour.value == 0.10


def test_resolve_hardware_errors_are_one_line_with_the_field() -> None:
    cat = load_catalogue()
    with pytest.raises(CapsimInputError, match=r"^hardware\.name: unknown hardware 'H10' \(did you mean"):
        resolve_hardware("H10", {"tdp_w": 100}, cat)
    with pytest.raises(CapsimInputError, match=r"^hardware\.usd_per_hr: unknown key"):
        resolve_hardware("T4", {"usd_per_hr": 1.0}, cat)
    with pytest.raises(CapsimInputError, match=r"^hardware\.tdp_w\.value: "):
        resolve_hardware("T4", {"tdp_w": "lots"}, cat)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"hardware": {"T4": {"tdp_w": "hot"}}}, "hardware.T4.tdp_w.value: "),
        ({"hardware": {"NewGPU": {"memory_gb": 8}}}, "hardware.NewGPU: not in the catalogue, so a new entry"),
        ({"hardware": {"H100-SMX": {"tdp_w": 650}}}, "hardware.H100-SMX: not in the catalogue, so a new entry: it must "
                                                     "say kind: gpu or cpu (did you mean: H100-SXM"),
        ({"hardware": {"T4": {"memroy_gb": 8}}}, "hardware.T4.memroy_gb: unknown key"),
        ({"hardware": {"T4": {"tdp_w": {"value": 5}}}}, None),  # a value without a source takes the user default
        ({"gpus": {}}, "gpus: unknown key"),
        ({"format": "other/2", "hardware": {}}, "format: expected 'capsim-catalogue/1'"),
        ({"hardware": {"T4": {"offers": [{"provider": "x", "instance_type": "y", "market": "spot",
                                          "source": "s", "confidence": "user"}]}}},
         "hardware.T4.offers[0]: an offer needs usd_per_hour or usd_per_gpu_hour"),
    ],
)  # fmt: skip
def test_bad_user_files_name_file_and_field(tmp_path: Path, document: object, expected: str | None) -> None:
    path = write(tmp_path, document)
    if expected is None:
        assert load_catalogue(path).get("T4").tdp_w.value == 5
        return
    with pytest.raises(CapsimInputError) as err:
        load_catalogue(path)
    assert err.value.one_line().startswith(f"{path}: {expected}"), err.value.one_line()


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(CapsimInputError, match="catalogue file not found"):
        load_catalogue(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("hardware: {T4: [unclosed\n")
    with pytest.raises(CapsimInputError, match=r"bad\.yaml: invalid YAML: line 2"):
        load_catalogue(bad)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_name_resolves_in_any_case_and_separator_style(data: st.DataObject) -> None:
    cat = load_catalogue()
    spec = data.draw(st.sampled_from(list(cat)))
    name = data.draw(st.sampled_from([spec.name, *spec.aliases]))
    seps = st.sampled_from(["-", "_", " ", ""])
    mangled = "".join(
        (c.upper() if data.draw(st.booleans()) else c.lower()) if c.isalnum() or c == "." else data.draw(seps)
        for c in name
    )
    assert cat.get(mangled).name == spec.name
