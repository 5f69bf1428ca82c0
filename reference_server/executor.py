"""Model executors: threads that run batches with torch, off the HTTP event loop.

torch releases the GIL inside its kernels, so an executor thread computing a batch leaves the event
loop free to parse and answer HTTP requests. Each executor owns a share of the CPU threads (intra-op
parallelism is set per executor thread) and, on CUDA, its own stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from reference_server.batcher import Batch
from reference_server.models import ModelSpec

log = logging.getLogger(__name__)


def pad_to_longest(inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The requests' arrays with their second axis (a sized model's sequence) zero-padded to the
    longest; unchanged when they already agree."""
    longest = max(a.shape[1] for a in inputs) if inputs[0].ndim > 1 else 0
    if all(a.ndim < 2 or a.shape[1] == longest for a in inputs):
        return inputs
    return [np.pad(a, [(0, 0), (0, longest - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in inputs]


class ModelRunner:
    """Runs one model on one device; the same code path serves HTTP batches and the profiler, so
    that a profile measures what the server's executors do."""

    def __init__(
        self, spec: ModelSpec, model: torch.nn.Module, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> None:
        self.spec = spec
        self.model = model
        self.device = device
        # Float inputs arrive as float32 and are cast to the model's precision (on the GPU, after
        # the copy); integer inputs (token ids) are left alone.
        self.input_dtype = dtype if spec.input_datatype == "FP32" and dtype != torch.float32 else None
        self.stream = torch.cuda.Stream(device=device) if device.type == "cuda" else None

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Concatenate the requests' items, run the model, split the outputs per request. Requests
        of a model with a size knob may differ in length: the batch is padded (zeros) to its
        longest, as servers batch tensors, so it costs its count × its largest size."""
        x = inputs[0] if len(inputs) == 1 else np.concatenate(pad_to_longest(inputs))
        with torch.inference_mode():
            tensor = torch.from_numpy(x)
            if self.stream is not None:
                with torch.cuda.stream(self.stream):
                    on_device = tensor.to(self.device, non_blocking=True)
                    if self.input_dtype is not None:
                        on_device = on_device.to(self.input_dtype)
                    y = self.model(on_device)
                    # .cpu() of a pageable tensor waits for this stream's work to finish.
                    out = y.float().cpu().numpy()
            else:
                if self.input_dtype is not None:
                    tensor = tensor.to(self.input_dtype)
                out = self.model(tensor).float().numpy()
        if len(inputs) == 1:
            return [out]
        bounds = np.cumsum([len(a) for a in inputs])[:-1]
        return np.split(out, bounds)

    def warm_up(self, batch_sizes: list[int], repeats: int = 3) -> None:
        """Run each batch size a few times: first calls pay for allocator growth, oneDNN primitive
        creation and CUDA kernel selection, which must not show up in served latencies."""
        for size in batch_sizes:
            example = self.spec.example_batch(size)
            for _ in range(repeats):
                self.run([example])


def torch_threads_per_instance(instances: int, requested: int | None) -> int:
    """CPU threads for each executor: unless told otherwise, the cores but one split evenly.

    One core is left to the HTTP event loop (parsing, batching, answering): on a 2-vCPU machine,
    two intra-op threads per executor made the CNN's batches wait for whichever thread the event
    loop (or a neighbour) had descheduled, and the max-batch-32 server sustained 1.85x the rate of
    max batch 1 at p99 <= 100 ms; with one thread, 2.5x (benchmarks/server_batching.py).
    """
    if requested is not None and requested > 0:
        return requested
    cores = len(_affinity())
    spare = 1 if cores > 1 else 0
    return max(1, (cores - spare) // max(1, instances))


def _affinity() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


class StallControl:
    """Shared "stall until" time for the `/debug/stall` hook (monotonic seconds)."""

    def __init__(self) -> None:
        self.until_mono = 0.0

    def wait(self) -> None:
        """Sleep until the current stall, if any, is over."""
        while (remaining := self.until_mono - time.monotonic()) > 0:
            time.sleep(remaining)


class Executor:
    """One model instance on its own thread, fed batches through a queue."""

    def __init__(
        self,
        index: int,
        runner: ModelRunner,
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[Batch, list[np.ndarray] | BaseException, float, float], None],
        *,
        torch_threads: int,
        extra_latency_s: float = 0.0,
        stall: StallControl | None = None,
    ) -> None:
        self.index = index
        self.runner = runner
        self._loop = loop
        self._on_done = on_done
        self._torch_threads = torch_threads
        self._extra_latency_s = extra_latency_s
        self._stall = stall or StallControl()
        self._jobs: queue.SimpleQueue[Batch | Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=f"executor-{index}", daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        """Start the thread (it sets its own torch thread count first)."""
        self._thread.start()
        self._started.wait()

    def warm_up(self, batch_sizes: list[int]) -> None:
        """Warm up on the executor's own thread, so the thread-local settings apply."""
        self._run_on_thread(lambda: self.runner.warm_up(batch_sizes))

    def time_batch(self, size: int, repeats: int = 5) -> float:
        """Median seconds of a `size`-item batch on this executor's thread, as the server would run
        it (`extra_latency_s` included); call after warm-up, before serving."""
        example = self.runner.spec.example_batch(size)
        times_s: list[float] = []

        def timed() -> None:
            for _ in range(repeats):
                t0 = time.perf_counter()
                self.runner.run([example])
                if self._extra_latency_s > 0:
                    time.sleep(self._extra_latency_s)
                times_s.append(time.perf_counter() - t0)

        self._run_on_thread(timed)
        return sorted(times_s)[len(times_s) // 2]

    def _run_on_thread(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the executor's thread (between batches) and wait; its exception is raised here."""
        done = threading.Event()
        errors: list[BaseException] = []

        def job() -> None:
            try:
                fn()
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)
            finally:
                done.set()

        self._jobs.put(job)
        done.wait()
        if errors:
            raise errors[0]

    def submit(self, batch: Batch) -> None:
        """Hand a batch to the thread (called on the event loop)."""
        self._jobs.put(batch)

    def stop(self) -> None:
        """Ask the thread to finish after its current batch."""
        self._jobs.put(None)

    def _main(self) -> None:
        # Intra-op thread count is per OS thread under OpenMP: set it here, not in the main thread.
        torch.set_num_threads(self._torch_threads)
        self._started.set()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if isinstance(job, Batch):
                self._run_batch(job)
            else:
                job()  # a warm-up closure

    def _run_batch(self, batch: Batch) -> None:
        result: list[np.ndarray] | BaseException
        try:
            result = self.runner.run([r.items for r in batch.requests])
            if self._extra_latency_s > 0:
                time.sleep(self._extra_latency_s)
        except Exception as exc:  # a bad batch must not kill the executor
            log.exception("batch %d failed", batch.batch_id)
            result = exc
        self._stall.wait()
        end_mono, end_epoch = time.monotonic(), time.time()
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            self._loop.call_soon_threadsafe(self._on_done, batch, result, end_mono, end_epoch)
