"""How many KV-cache blocks fit on a replica: vLLM's memory-profiling rule.

vLLM (v0.11, `v1/worker/gpu_worker.py determine_available_memory`) gives the KV cache what is left of
each GPU's memory after the weights and the peak of a profiling forward pass:

    kv_bytes_per_gpu = total × gpu_memory_utilization − (weights / tp + activation peak + non-torch)

and cuts it into pages of `block_size` tokens (`v1/core/kv_cache_utils.py get_num_blocks`):

    blocks = floor(kv_bytes_per_gpu / (block_size × KV bytes per token per GPU))

The activation peak and non-torch memory are measured by vLLM at start-up; without a measurement
capsim takes the constants of BLIS's capacity planner (`sim/latency/kv_capacity.go`, "matching the
llm-d-benchmark capacity planner"): 5.5 GiB activation for dense models and 8.0 GiB for mixtures of
experts, 0.15 GiB non-torch memory at tp 1 and 0.6 GiB above. CUDA-graph memory is captured after
the KV cache is allocated and is not subtracted (as in vLLM v0.11).

The figure is an estimate. `total` is the catalogue's datasheet memory_gb × 1e9, while vLLM takes the
total torch reports, which on the 80 GB parts is about 79.1–79.3 GiB (85e9 bytes: the "GB" of those
datasheets are GiB, less a reserve) — so the estimate is low by up to ~10% of the KV space there. The
number the engine logs at start-up ("GPU KV cache size: N tokens") is better, and a scenario that
gives `kv_cache_blocks` uses it instead. See docs/model.md, "Models and KV cache capacity".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from capsim.errors import CapsimInputError
from capsim.hardware.model_catalogue import ModelShape, kv_bytes_per_token, weight_bytes
from capsim.hardware.spec import HardwareSpec

GIB = 1024**3
ACTIVATION_BYTES_DENSE = 5.5 * GIB
"""Peak activation of vLLM's profiling run, dense models (BLIS kv_capacity.go, llm-d planner)."""
ACTIVATION_BYTES_MOE = 8.0 * GIB
"""Peak activation of vLLM's profiling run, mixture-of-experts models (same source)."""
NON_TORCH_BYTES_TP1 = 0.15 * GIB
"""Memory outside torch's allocator (CUDA context, NCCL off) at tensor parallel 1 (same source)."""
NON_TORCH_BYTES_TP = 0.6 * GIB
"""Memory outside torch's allocator with NCCL buffers, tensor parallel > 1 (same source)."""
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
"""vLLM v0.11's default `gpu_memory_utilization` (`config/cache.py`)."""


@dataclass(frozen=True)
class KvBudget:
    """One GPU's memory as vLLM's profiling rule divides it, in bytes, and the blocks that fit."""

    usable_bytes: float  # total × gpu_memory_utilization
    weight_bytes: float  # weights / tp
    activation_bytes: float
    non_torch_bytes: float
    block_bytes: float  # block_size × KV bytes per token on this GPU
    blocks: int

    @property
    def kv_bytes(self) -> float:
        """What is left for the KV cache."""
        return self.usable_bytes - self.weight_bytes - self.activation_bytes - self.non_torch_bytes


def gpu_memory_bytes(spec: HardwareSpec) -> float:
    """One GPU's memory in bytes: the catalogue's `memory_gb` × 1e9 (an error naming it if null)."""
    return spec.require("memory_gb", "deriving kv_cache_blocks") * 1e9


def kv_budget(
    model: ModelShape,
    memory_bytes: float,
    *,
    block_size: int,
    tp: int = 1,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    dtype_bytes: float = 2.0,
    activation_bytes: float | None = None,
    non_torch_bytes: float | None = None,
) -> KvBudget:
    """The KV budget of one GPU of `memory_bytes` serving `model` sharded over `tp` GPUs (module
    docstring). Activation and non-torch memory default to the planner constants."""
    if activation_bytes is None:
        activation_bytes = ACTIVATION_BYTES_MOE if model.is_moe else ACTIVATION_BYTES_DENSE
    if non_torch_bytes is None:
        non_torch_bytes = NON_TORCH_BYTES_TP1 if tp == 1 else NON_TORCH_BYTES_TP
    block_bytes = block_size * kv_bytes_per_token(model, dtype_bytes, tp)
    usable = memory_bytes * gpu_memory_utilization
    weights = weight_bytes(model, dtype_bytes) / tp
    free = usable - weights - activation_bytes - non_torch_bytes
    return KvBudget(usable, weights, activation_bytes, non_torch_bytes, block_bytes,
                    max(math.floor(free / block_bytes), 0))  # fmt: skip


def kv_cache_blocks(
    model: ModelShape,
    spec: HardwareSpec,
    *,
    block_size: int,
    tp: int = 1,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    dtype_bytes: float = 2.0,
    field: str = "serving.scheduler.kv_cache_blocks",
) -> int:
    """KV-cache blocks of one replica of `tp` GPUs of `spec` (each GPU holds the same block count:
    vLLM's pages are per GPU, each holding that GPU's share of the heads).

    Raises a one-line error naming `field` when nothing is left for the KV cache (the weights and the
    reserve exceed the memory): use more GPUs per replica, or give kv_cache_blocks from the log."""
    budget = kv_budget(model, gpu_memory_bytes(spec), block_size=block_size, tp=tp,
                       gpu_memory_utilization=gpu_memory_utilization, dtype_bytes=dtype_bytes)  # fmt: skip
    if budget.blocks < 1:
        raise CapsimInputError(
            f"no memory left for the KV cache: {spec.name} × {tp} holds {budget.usable_bytes / 1e9:.3g} GB per GPU "
            f"at gpu_memory_utilization {gpu_memory_utilization:g}, but {model.name}'s weights take "
            f"{budget.weight_bytes / 1e9:.3g} GB and the activation and runtime reserve "
            f"{(budget.activation_bytes + budget.non_torch_bytes) / 1e9:.3g} GB; use more gpus_per_replica or "
            "give kv_cache_blocks (vLLM logs 'GPU KV cache size: N tokens')",
            field=field,
        )
    return budget.blocks
