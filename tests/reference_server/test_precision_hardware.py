"""Reduced precision (`--dtype`) on the CPU, and the GPU hardware record's catalogue names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capsim.hardware.catalogue import load_catalogue
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
