"""Reduced precision (`--dtype`) on the CPU, and the GPU hardware record's catalogue names."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from capsim.hardware.catalogue import load_catalogue
from reference_server import hardware
from reference_server.executor import ModelRunner
from reference_server.hardware import NVML_CATALOGUE_NAMES, catalogue_name
from reference_server.models import DTYPES, MODELS, OneDnnModule, load_model

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_serves_the_same_function(name: str, dtype: str) -> None:
    """The half-precision model is the float32 model rounded: same weights (drawn in float32 from the
    seed), float32 answers out, close to the float32 answers, split per request as before."""
    spec = MODELS[name]
    full = ModelRunner(spec, load_model(name, CPU), CPU)
    model = load_model(name, CPU, dtype=dtype)
    assert not isinstance(model, OneDnnModule)  # oneDNN's prepacked layout is float32 only
    assert {p.dtype for p in model.parameters()} == {DTYPES[dtype]}
    half = ModelRunner(spec, model, CPU, DTYPES[dtype])
    requests = list(spec.example_batch(4, seed=3)[:, np.newaxis])
    expected = full.run(requests)
    got = half.run(requests)
    assert len(got) == 4
    assert all(g.dtype == np.float32 and g.shape == e.shape for g, e in zip(got, expected, strict=True))
    scale = max(float(np.abs(np.concatenate(expected)).max()), 1e-3)
    error = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True)) / scale
    # bfloat16 keeps 8 bits of mantissa, float16 11: a few per cent of the output's range at most.
    assert error < 0.05, error
    assert error > 0  # the weights really were rounded (a float32 model would match exactly)


def test_every_mapped_gpu_name_is_in_the_hardware_catalogue() -> None:
    catalogue = load_catalogue()
    for nvml_name, entry in NVML_CATALOGUE_NAMES.items():
        assert catalogue.get(entry).name == entry, nvml_name


def test_gpu_names_map_to_catalogue_entries_and_unknown_ones_to_a_slug() -> None:
    assert catalogue_name("NVIDIA H100 80GB HBM3") == "H100-SXM"  # read by NVML on the measured H100
    assert catalogue_name("NVIDIA H100 PCIe") == "H100-PCIe"
    assert catalogue_name("NVIDIA RTX 6000 Ada Generation") == "rtx-6000-ada-generation"


def _fake_pynvml(name: str) -> types.ModuleType:
    """A pynvml module with one GPU (the NVML boundary only)."""
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    mod.NVMLError = NVMLError  # type: ignore[attr-defined]
    mod.NVML_CLOCK_SM = 1  # type: ignore[attr-defined]
    mod.nvmlInit = lambda: None  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlSystemGetDriverVersion = lambda: "580.159.04"  # type: ignore[attr-defined]
    mod.nvmlSystemGetCudaDriverVersion_v2 = lambda: 13000  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: name.encode()  # type: ignore[attr-defined]  # older bindings return bytes
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=85520809984)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000  # type: ignore[attr-defined]

    def max_clock(handle: object, clock: int) -> int:
        raise NVMLError("Not Supported")  # a field the GPU does not report is left out

    mod.nvmlDeviceGetMaxClockInfo = max_clock  # type: ignore[attr-defined]
    return mod


def test_cuda_hardware_record_merges_nvml_and_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a profile measured on a GPU records, with NVML and torch's CUDA faked at their boundary
    (the values are those read on the H100 of benchmarks/data/h100)."""
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml("NVIDIA H100 80GB HBM3"))
    from_torch = {
        "device_name": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "multiprocessors": 132,
        "memory_total_bytes": 85520809984,
        "cuda_runtime_version": "13.0",
        "cudnn_version": 91900,
    }
    monkeypatch.setattr(hardware, "torch_cuda_info", lambda index: dict(from_torch))
    record = hardware.describe("cuda", torch_threads=1)
    assert record["name"] == "H100-SXM" and record["device_name"] == "NVIDIA H100 80GB HBM3"
    assert record["driver_version"] == "580.159.04" and record["cuda_driver_version"] == "13.0"
    assert record["power_limit_w"] == 700.0 and "max_sm_clock_mhz" not in record
    assert record["compute_capability"] == "9.0" and record["nvml"] == "ok" and record["gpu_count"] == 1


def test_cuda_hardware_record_without_nvml_names_the_gpu_from_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _fake_pynvml("unused")

    def fail() -> None:
        raise broken.NVMLError("Driver Not Loaded")  # type: ignore[attr-defined]

    broken.nvmlInit = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    monkeypatch.setattr(hardware, "torch_cuda_info", lambda index: {"device_name": "NVIDIA L4"})
    record = hardware.describe("cuda", torch_threads=1)
    assert record["name"] == "L4" and "Driver Not Loaded" in record["nvml"]
