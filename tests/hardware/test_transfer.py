"""Roofline estimates and profile transfer across hardware, against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim.errors import CapsimInputError
from capsim.hardware import HardwareSpec, ModelCost, load_catalogue, resolve_hardware, roofline_time
from capsim.servicetime import Profile, read_profile
from capsim.servicetime.transfer import (
    TransferSpec,
    apply_transfer,
    estimate_overhead_s,
    is_extrapolated,
    measured_on,
    transfer_profile,
)

CAT = load_catalogue()
T4, A100 = CAT.get("T4"), CAT.get("A100-40GB")
# Compute-bound: 1 GFLOP per item, a few KB moved. Memory-bound: 2 GB of weights, tiny compute.
COMPUTE = ModelCost(flops_per_item=1e9, weight_bytes=1e3, activation_bytes_per_item=1e3)
MEMORY = ModelCost(flops_per_item=1e3, weight_bytes=2e9, activation_bytes_per_item=1e6)


def profile(sizes: tuple[int, ...] = (1, 4, 16), scale_ms: float = 1.0, dtype: str = "float16") -> Profile:
    """A measured-looking profile whose quantile curves have a skewed shape at each size."""
    rng = np.random.default_rng(7)
    samples = {k: scale_ms * (1 + 0.1 * k) * rng.lognormal(0.0, 0.3, 400) for k in sizes}
    return Profile.from_samples(samples, hardware={"name": "T4"}, framework={"dtype": dtype})


def gpu(name: str, **figures: float | None) -> HardwareSpec:
    """A synthetic GPU whose figures are round numbers, for hand computation."""
    base = {"kind": "gpu", "spec_source": {"source": "test", "confidence": "user"}}
    return resolve_hardware(name, {**base, **figures}, CAT)


def test_roofline_hand_computed() -> None:
    r = roofline_time(COMPUTE, T4, 8, "fp16")
    assert r.compute_s == pytest.approx(8e9 / 65e12) and r.memory_s == pytest.approx(9e3 / 320e9)
    assert r.bound == "compute" and r.time_s == r.compute_s
    m = roofline_time(MEMORY, A100, 4, "fp16")
    assert m.memory_s == pytest.approx((2e9 + 4e6) / 1555e9) and m.bound == "memory"
    # fp32 doubles the bytes (declared at fp16) and uses the FP32 column.
    m32 = roofline_time(MEMORY, A100, 4, "fp32")
    assert m32.memory_s == pytest.approx(2 * (2e9 + 4e6) / 1555e9)
    assert roofline_time(COMPUTE, A100, 4, "fp32").compute_s == pytest.approx(4e9 / 19.5e12)


def test_compute_bound_scales_with_the_flops_ratio() -> None:
    measured = profile()
    out = transfer_profile(measured, T4, A100, COMPUTE, "fp16", overhead_s=0.0)
    for before, after in zip(measured.points, out.points, strict=True):
        assert after.mean_ms == pytest.approx(before.mean_ms * 65 / 312)
        assert after.quantiles_ms == pytest.approx([q * 65 / 312 for q in before.quantiles_ms])


def test_memory_bound_scales_with_the_bandwidth_ratio() -> None:
    measured = profile()
    out = transfer_profile(measured, T4, A100, MEMORY, "fp16", overhead_s=0.0)
    for before, after in zip(measured.points, out.points, strict=True):
        assert after.mean_ms == pytest.approx(before.mean_ms * 320 / 1555)


def test_shape_is_preserved() -> None:
    measured = profile()
    out = transfer_profile(measured, T4, A100, COMPUTE, "fp16")
    levels = measured.quantile_levels
    i50, i99 = levels.index(0.5), levels.index(0.99)
    for before, after in zip(measured.points, out.points, strict=True):
        ratio_before = before.quantiles_ms[i99] / before.quantiles_ms[i50]
        assert after.quantiles_ms[i99] / after.quantiles_ms[i50] == pytest.approx(ratio_before)
        assert after.count == before.count
    assert [p.batch_size for p in out.points] == [p.batch_size for p in measured.points]


def test_precision_switches_columns() -> None:
    measured = profile(dtype="float16")
    int8 = transfer_profile(measured, T4, A100, COMPUTE, "int8", overhead_s=0.0)
    # Source at fp16 (65 TFLOPS on T4, from the profile's dtype), target at int8 (624 TOPS on A100).
    assert int8.points[0].mean_ms == pytest.approx(measured.points[0].mean_ms * 65 / 624)
    fp32 = transfer_profile(measured, T4, A100, COMPUTE, "fp32", source_precision="fp32", overhead_s=0.0)
    assert fp32.points[0].mean_ms == pytest.approx(measured.points[0].mean_ms * 8.1 / 19.5)
    assert int8.provenance["precision"] == {"source": "fp16", "target": "int8"}


def test_a_null_column_is_a_clear_error() -> None:
    with pytest.raises(CapsimInputError) as err:
        transfer_profile(profile(), T4, A100, COMPUTE, "fp8")
    line = err.value.one_line()
    assert line.startswith("hardware.fp8_tflops: A100-40GB has no fp8_tflops in the catalogue") and "\n" not in line
    with pytest.raises(CapsimInputError, match="unknown precision 'fp4'"):
        transfer_profile(profile(), T4, A100, COMPUTE, "fp4")
    with pytest.raises(CapsimInputError, match=r"hardware\.fp32_tflops: c7i\.xlarge has no fp32_tflops"):
        transfer_profile(profile(), CAT.get("c7i.xlarge"), A100, COMPUTE, "fp16", source_precision="fp32")


def test_tensor_parallel_divides_by_gpus_times_efficiency() -> None:
    measured = profile()
    one = transfer_profile(measured, T4, A100, COMPUTE, "fp16", overhead_s=0.0)
    four = transfer_profile(measured, T4, A100, COMPUTE, "fp16", gpus=4, scaling_efficiency=0.8, overhead_s=0.0)
    assert four.points[1].mean_ms == pytest.approx(one.points[1].mean_ms / (4 * 0.8))
    mem_one = transfer_profile(measured, T4, A100, MEMORY, "fp16", overhead_s=0.0)
    mem_two = transfer_profile(measured, T4, A100, MEMORY, "fp16", gpus=2, scaling_efficiency=0.9, overhead_s=0.0)
    assert mem_two.points[0].mean_ms == pytest.approx(mem_one.points[0].mean_ms / (2 * 0.9))
    assert four.provenance["gpus_per_replica"] == {"source": 1, "target": 4}
    with pytest.raises(CapsimInputError, match="scaling_efficiency"):
        transfer_profile(measured, T4, A100, COMPUTE, "fp16", gpus=2, scaling_efficiency=1.5)


def test_weights_that_do_not_fit_are_an_error() -> None:
    big = ModelCost(flops_per_item=1e9, weight_bytes=140e9)
    with pytest.raises(CapsimInputError, match=r"140 GB at fp16 but 1 × A100-40GB have 40 GB"):
        transfer_profile(profile(), T4, A100, big, "fp16")
    ok = transfer_profile(profile(), CAT.get("H200"), CAT.get("H100-SXM"), big, "fp16", gpus=2)
    assert ok.hardware["gpus_per_replica"] == 2


def test_overhead_is_estimated_and_kept_constant() -> None:
    src, tgt = gpu("src", fp16_tflops=100, memory_bandwidth_gbps=1000), gpu("tgt", fp16_tflops=400,
                                                                          memory_bandwidth_gbps=1000)  # fmt: skip
    model = ModelCost(flops_per_item=1e10)  # 0.1 ms per item at 100 TFLOPS: compute-bound on both
    sizes = (1, 2, 4, 8)
    overhead_ms = 2.0
    # Deterministic measurements: 2 ms fixed + 1.5 × roofline (the kernels run at 2/3 of peak).
    samples = {k: np.full(10, overhead_ms + 1.5 * 0.1 * k) for k in sizes}
    measured = Profile.from_samples(samples, framework={"dtype": "float16"})
    roof = np.array([roofline_time(model, src, k, "fp16").time_s for k in sizes])
    assert estimate_overhead_s(np.array([p.mean_ms for p in measured.points]) / 1e3, roof) == pytest.approx(2e-3)
    out = transfer_profile(measured, src, tgt, model, "fp16")
    assert out.provenance["overhead_s"] == pytest.approx(2e-3) and out.provenance["overhead_estimated"]
    for k, point in zip(sizes, out.points, strict=True):
        assert point.mean_ms == pytest.approx(overhead_ms + 1.5 * 0.1 * k / 4)
    # With one batch size there is nothing to fit: everything scales.
    assert estimate_overhead_s(np.array([0.003]), np.array([0.001])) == 0.0


def test_provenance_flags_the_result_as_extrapolated() -> None:
    measured = profile()
    out = transfer_profile(measured, T4, A100, COMPUTE, "fp16")
    assert is_extrapolated(out) and not is_extrapolated(measured)
    prov = out.provenance
    assert prov["source_hardware"] == "T4" and prov["target_hardware"] == "A100-40GB"
    assert prov["scaling_efficiency"] == 0.9 and len(prov["factors"]) == len(measured.points)
    assert prov["factors"][0]["source_bound"] == "compute"
    assert prov["figures"]["target"]["fp16_tflops"]["source"].startswith("NVIDIA A100 datasheet")
    assert out.hardware["name"] == "A100-40GB" and out.hardware["extrapolated_from"] == "T4"
    Profile.model_validate(out.model_dump(mode="json"))  # still a valid profile file


def test_measured_on_finds_the_profile_hardware() -> None:
    assert measured_on(profile(), CAT).name == "T4"
    laptop = Profile.from_samples({1: np.ones(3)}, hardware={"name": "cpu-2core"})
    with pytest.raises(CapsimInputError, match=r"^hardware\.source: unknown hardware 'cpu-2core'"):
        measured_on(laptop, CAT)


def test_same_hardware_is_the_identity_and_a_round_trip_returns() -> None:
    measured = profile()
    same = transfer_profile(measured, T4, T4, COMPUTE, "fp16")
    for after, before in zip(same.points, measured.points, strict=True):
        assert after.quantiles_ms == pytest.approx(before.quantiles_ms)
    there = transfer_profile(measured, T4, A100, MEMORY, "fp16", overhead_s=0.0)
    back = transfer_profile(there, A100, T4, MEMORY, "fp16", overhead_s=0.0)
    assert [p.mean_ms for p in back.points] == pytest.approx([p.mean_ms for p in measured.points])


def test_transfer_spec_resolves_the_source_from_the_profile() -> None:
    spec = TransferSpec(model=COMPUTE, precision="fp16", gpus_per_replica=2, overhead_ms=0)
    out = apply_transfer(profile(), spec, A100, CAT)
    direct = transfer_profile(profile(), T4, A100, COMPUTE, "fp16", gpus=2, overhead_s=0.0)
    assert out.points == direct.points
    named = TransferSpec(source="t4", model=COMPUTE, overhead_ms=0)
    assert apply_transfer(profile(), named, A100, CAT).provenance["source_hardware"] == "T4"
    with pytest.raises(CapsimInputError, match=r"^service\.transfer\.source: unknown hardware 'T5'"):
        apply_transfer(profile(), TransferSpec(source="T5", model=COMPUTE), A100, CAT)


GPUS = ["T4", "L4", "L40S", "A100-80GB", "H100-SXM", "H200", "B200"]


@settings(max_examples=40, deadline=None)
@given(
    source=st.sampled_from(GPUS), target=st.sampled_from(GPUS),
    flops=st.floats(1e3, 1e12), weights=st.floats(0, 1e10), activations=st.floats(0, 1e8),
    gpus=st.integers(1, 8), efficiency=st.floats(0.5, 1.0),
)  # fmt: skip
def test_transfer_properties(source: str, target: str, flops: float, weights: float, activations: float, gpus: int,
                             efficiency: float) -> None:  # fmt: skip
    """For any model and any pair of GPUs: quantiles stay valid, shape is kept, and with no overhead the
    factor lies between the ratios of the two roofline sides' rates."""
    src, tgt = CAT.get(source), CAT.get(target)
    model = ModelCost(flops_per_item=flops, weight_bytes=weights, activation_bytes_per_item=activations)
    if weights / 1e9 > (tgt.memory_gb.value or 0) * gpus:
        return
    measured = profile()
    out = transfer_profile(measured, src, tgt, model, "fp16", gpus=gpus, scaling_efficiency=efficiency, overhead_s=0)
    p = gpus * efficiency if gpus > 1 else 1.0
    rates = [
        src.fp16_tflops.value / (tgt.fp16_tflops.value * p),  # type: ignore[operator]
        src.memory_bandwidth_gbps.value / (tgt.memory_bandwidth_gbps.value * p),  # type: ignore[operator]
    ]
    for before, after in zip(measured.points, out.points, strict=True):
        factor = after.mean_ms / before.mean_ms
        assert min(rates) * (1 - 1e-9) <= factor <= max(rates) * (1 + 1e-9)
        assert np.allclose(np.asarray(after.quantiles_ms), np.asarray(before.quantiles_ms) * factor)


def test_transferred_profile_survives_a_file_round_trip(tmp_path: Path) -> None:
    out = transfer_profile(profile(), T4, A100, COMPUTE, "fp16")
    out.write(tmp_path / "a100.json")
    again = read_profile(tmp_path / "a100.json")
    assert is_extrapolated(again) and again.points == out.points
    assert again.provenance["target_hardware"] == "A100-40GB"


def test_a_defaulted_source_precision_is_named_in_the_error() -> None:
    undated = Profile.from_samples({1: np.ones(5), 4: 2 * np.ones(5)}, hardware={"name": "T4"})
    with pytest.raises(CapsimInputError, match=r"T4 has no fp8_tflops .* defaulted to the target's, fp8"):
        transfer_profile(undated, T4, CAT.get("H100-SXM"), COMPUTE, "fp8")
    out = transfer_profile(undated, T4, CAT.get("H100-SXM"), COMPUTE, "fp8", source_precision="fp16", overhead_s=0)
    assert out.points[0].mean_ms == pytest.approx(65 / 1979)
