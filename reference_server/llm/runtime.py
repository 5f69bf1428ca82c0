"""Start-up of the reference LLM server: device, precision, threads, the model, the KV cache's size,
warm-up, and the engine thread.

KV blocks (`--num-gpu-blocks auto`): on CUDA, vLLM's profiling rule in its simplest form —
0.9 × total memory − the weights − a 1 GiB activation reserve (vLLM measures a profile run's peak;
the BLIS planner budgets 5.5 GiB for an 8B model, docs/model.md "Models and KV cache capacity") —
divided by a block's bytes; on the CPU a fixed 256 MiB. Both are capped at what `max_num_seqs`
sequences of max_model_len tokens can use. The log line and /debug/config state the number.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from reference_server.executor import torch_threads_per_instance
from reference_server.hardware import describe
from reference_server.llm.config import CPU_KV_BUDGET_BYTES, LlmServerConfig
from reference_server.llm.engine import LlmEngine
from reference_server.llm.metrics import LlmMetrics
from reference_server.llm.model import build_model
from reference_server.llm.paged_attention import PagedKVCache
from reference_server.llm.presets import PRESETS, LlmShape
from reference_server.llm.scheduler import Scheduler, SchedulerConfig, Sequence
from reference_server.llm.steplog import StepLog
from reference_server.models import DTYPES, resolve_device

log = logging.getLogger("reference_server.llm")
ACTIVATION_RESERVE_BYTES = 1024**3
GPU_MEMORY_UTILIZATION = 0.9  # vLLM v0.11's default


def resolve_num_blocks(config: LlmServerConfig, shape: LlmShape, dtype: torch.dtype, device: torch.device) -> int:
    """KV blocks to allocate (see the module docstring)."""
    if config.num_gpu_blocks is not None:
        return config.num_gpu_blocks
    block_bytes = config.block_size * shape.kv_bytes_per_token(torch.tensor([], dtype=dtype).element_size())
    cap = config.max_num_seqs * -(-config.context_len // config.block_size)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        budget = GPU_MEMORY_UTILIZATION * total - torch.cuda.memory_allocated(device) - ACTIVATION_RESERVE_BYTES
    else:
        budget = CPU_KV_BUDGET_BYTES
    blocks = min(cap, int(budget // block_bytes))
    if blocks < 1:
        raise RuntimeError(f"no memory left for the KV cache ({budget / 2**30:.2f} GiB after the weights)")
    return blocks


@dataclass
class LlmRuntime:
    """The running engine and what start-up chose."""

    engine: LlmEngine
    scheduler_config: SchedulerConfig
    hardware: dict[str, Any]
    resolved: dict[str, Any]

    @classmethod
    def create(cls, config: LlmServerConfig, metrics: LlmMetrics, step_log: StepLog) -> LlmRuntime:
        """Load the model, size the cache, warm up and start the engine thread."""
        device = resolve_device(config.device)
        dtype_name = config.dtype or ("bfloat16" if device.type == "cuda" else "float32")
        dtype = DTYPES[dtype_name]
        threads = torch_threads_per_instance(1, config.torch_threads or None)
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # already set in this process
            torch.set_num_interop_threads(1)
        shape = PRESETS[config.model]
        t0 = time.perf_counter()
        model = build_model(shape, config.seed, device, dtype)
        num_blocks = resolve_num_blocks(config, shape, dtype, device)
        cache = PagedKVCache(shape.layers, num_blocks, config.block_size, shape.kv_heads, shape.head_dim, dtype, device)
        sched_config = SchedulerConfig(config.max_num_seqs, config.max_num_batched_tokens,
                                       config.enable_chunked_prefill, config.block_size, num_blocks,
                                       config.enable_prefix_caching, config.context_len)  # fmt: skip
        engine = LlmEngine(model, cache, Scheduler(sched_config), metrics, step_log, device, config.seed)
        warm_up(engine)
        log.info("%s on %s (%s, %d threads): %d KV blocks of %d tokens (%.1f MiB), loaded in %.1f s", config.model,
                 device, dtype_name, threads, num_blocks, config.block_size, cache.nbytes / 2**20,
                 time.perf_counter() - t0)  # fmt: skip
        engine.start()
        hardware = describe(device.type, threads, device.index or 0)
        hardware.update(torch_version=torch.__version__, device=str(device), dtype=dtype_name)
        resolved = {"num_gpu_blocks": num_blocks, "dtype": dtype_name, "device": str(device), "torch_threads": threads,
                    "kv_cache_bytes": cache.nbytes}  # fmt: skip
        return cls(engine, sched_config, hardware, resolved)


def warm_up(engine: LlmEngine) -> None:
    """Run one short sequence through the model on a scratch scheduler (first-call costs, the
    allocator), outside the metrics and the step log; the engine's scheduler stays fresh."""
    cfg = engine.scheduler.config
    sched = Scheduler(cfg)
    n = max(1, min(32, cfg.max_num_batched_tokens, cfg.num_blocks * cfg.block_size - 4, cfg.max_model_len - 4))
    sched.add(Sequence("warm-up", list(range(n)), max_tokens=4))
    with torch.inference_mode():
        while sched.has_work:
            plan = sched.schedule(0.0)
            tokens, positions, batch, rows, seqs = engine.step_inputs(plan)
            logits = engine.model.forward_step(tokens, positions, engine.cache, batch, rows)
            sched.finish_step(plan, dict(zip(seqs, logits.argmax(-1).tolist(), strict=True)))
