"""The torch side of the server: the loaded model and its executors (imported lazily, off the event
loop, because importing torch takes seconds)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import torch

from reference_server.batcher import DynamicBatcher
from reference_server.config import ServerConfig
from reference_server.executor import Executor, ModelRunner, StallControl, torch_threads_per_instance
from reference_server.hardware import describe
from reference_server.models import DTYPES, MODELS, load_model, resolve_device

log = logging.getLogger(__name__)


def warm_up_sizes(max_batch_size: int) -> list[int]:
    """Batch sizes to run before declaring readiness: every size up to the maximum (up to 64, then
    powers of two and the maximum). oneDNN creates (JIT-compiles) a primitive for each new input
    shape on first use, which costs tens of milliseconds: warming only powers of two left the first
    batch of 3, 5, 6, ... items that slow, enough to blow a p99 target."""
    if max_batch_size <= 64:
        return list(range(1, max_batch_size + 1))
    sizes = list(range(1, 65))
    size = 128
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch_size]


class Runtime:
    """The model, its executors and the stall hook."""

    def __init__(
        self, config: ServerConfig, executors: list[Executor], stall: StallControl, hardware: dict[str, Any]
    ) -> None:
        self.config = config
        self.executors = executors
        self.stall = stall
        self.hardware = hardware

    @classmethod
    def create(cls, config: ServerConfig, batcher: DynamicBatcher, loop: asyncio.AbstractEventLoop) -> Runtime:
        """Load the model and start `config.instances` executors attached to `batcher`."""
        device = resolve_device(config.device)
        # Inter-op threads are only used by torch.jit forks; one is plenty and saves memory.
        with contextlib.suppress(RuntimeError):  # already set: a second server in this process
            torch.set_num_interop_threads(1)
        threads = torch_threads_per_instance(config.instances, config.torch_threads or None)
        # Executors share one copy of the weights: inference does not mutate the module, and on
        # the CPU a copy per instance would only compete for the same caches.
        model = load_model(config.model, device, seed=config.seed, dtype=config.dtype)
        spec = MODELS[config.model]
        stall = StallControl()
        executors = [
            Executor(
                i,
                ModelRunner(spec, model, device, DTYPES[config.dtype]),
                loop,
                batcher.on_batch_done,
                torch_threads=threads,
                extra_latency_s=config.extra_latency_ms / 1e3,
                stall=stall,
            )
            for i in range(config.instances)
        ]
        for executor in executors:
            executor.start()
        batcher.attach(executors)
        hardware = describe(device.type, threads, device.index or 0)
        hardware["torch_version"] = torch.__version__
        hardware["device"] = str(device)
        hardware["dtype"] = config.dtype
        log.info("model %s on %s: %d executor(s) x %d torch thread(s)", config.model, device, len(executors), threads)
        return cls(config, executors, stall, hardware)

    def warm_up(self) -> None:
        """Run every warm-up batch size on every executor (before the server says ready)."""
        sizes = warm_up_sizes(self.config.max_batch_size)
        for executor in self.executors:
            executor.warm_up(sizes)

    def max_batch_s(self) -> float:
        """Median time of a full (`max_batch_size`) batch on the first executor, after warm-up: what
        the queue's default bounds are made of (`queue_policy.py`)."""
        return self.executors[0].time_batch(self.config.max_batch_size)

    def stop(self) -> None:
        """Ask the executor threads to finish."""
        for executor in self.executors:
            executor.stop()
