"""What one item of a bundled model costs, independent of hardware: the figures a roofline needs.

`capsim profile` records them in the profile (`model.cost`) so that `service.transfer` can move the
measured profile to other hardware without the user counting FLOPs by hand. They are counted on
the model itself, not declared:

- `flops_per_item`: torch's FlopCounterMode over one forward pass of a batch, divided by its size
  (matrix products and convolutions, a multiply-add counted as 2; element-wise work is left out,
  as the roofline's compute term is about tensor-core work);
- `weight_bytes`: every parameter and buffer at float32 (`bytes_precision: fp32`), read once per
  batch;
- `activation_bytes_per_item`: every leaf module's output for one item, written once and read once
  (× 2), at float32: an upper bound on the traffic when nothing is fused.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reference_server.models import DTYPES, MODELS

_COUNT_BATCH = 8  # items per counted pass: large enough that per-batch work is not confused with per-item


def model_cost(name: str) -> dict[str, Any]:
    """`{name, flops_per_item, weight_bytes, activation_bytes_per_item, bytes_precision: fp32}` of model `name`."""
    spec = MODELS[name]
    torch.manual_seed(0)
    model = spec.build().eval()  # the plain module: a oneDNN layout hides its operations from the counter
    batch = torch.as_tensor(spec.example_batch(_COUNT_BATCH))
    output_elements = 0

    def count_outputs(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal output_elements
        if isinstance(output, torch.Tensor):
            output_elements += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [leaf.register_forward_hook(count_outputs) for leaf in leaves]
    # The fused transformer fast path runs attention as one native op the counter cannot see.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(batch)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for hook in hooks:
            hook.remove()
    element_bytes = torch.finfo(DTYPES["float32"]).bits // 8
    weight_elements = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    return {
        "name": name,
        "flops_per_item": counter.get_total_flops() / _COUNT_BATCH,
        "weight_bytes": float(weight_elements * element_bytes),
        "activation_bytes_per_item": 2.0 * output_elements * element_bytes / _COUNT_BATCH,
        "bytes_precision": "fp32",
        "method": "reference_server.model_cost: torch FlopCounterMode; parameters and leaf outputs at fp32",
    }


def add_cost_to_profiles(paths: list[Path]) -> None:
    """Record `model.cost` in profiles written before `capsim profile` did so (measurements untouched)."""
    from capsim.servicetime.profile_format import read_profile

    for path in paths:
        profile = read_profile(path, field="PROFILE")
        name = str(profile.model.get("name", ""))
        if name not in MODELS:
            raise SystemExit(f"error: {path}: model.name: '{name}' is not a bundled model ({', '.join(MODELS)})")
        profile.model["cost"] = model_cost(name)
        profile.write(path)
        print(f"{path}: model.cost of {name} recorded")


if __name__ == "__main__":
    # python -m reference_server.model_cost PROFILE...
    add_cost_to_profiles([Path(arg) for arg in sys.argv[1:]])
