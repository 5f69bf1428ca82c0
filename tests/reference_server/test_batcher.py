"""The dynamic batcher's rules, with hand-driven executors: no torch, no HTTP, no threads.

Executors here never finish on their own; the test finishes batches explicitly, so what is asserted
is which requests form which batch, not how long anything took (time only enters as lower bounds on
waits that the rules impose).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from reference_server.batcher import (
    Batch,
    BatcherConfig,
    BatcherObserver,
    DynamicBatcher,
    QueueFull,
    QueueTimeout,
)


class HeldExecutor:
    """Keeps the batches it is given until the test finishes them."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def submit(self, batch: Batch) -> None:
        self.batches.append(batch)


def finish(batcher: DynamicBatcher, batch: Batch, loop: asyncio.AbstractEventLoop) -> None:
    outputs = [r.items * 2 for r in batch.requests]
    batcher.on_batch_done(batch, outputs, loop.time(), 0.0)


def make(loop: asyncio.AbstractEventLoop, n_exec: int = 1, **cfg: float) -> tuple[DynamicBatcher, list[HeldExecutor]]:
    batcher = DynamicBatcher(BatcherConfig(**cfg), loop)  # type: ignore[arg-type]
    executors = [HeldExecutor() for _ in range(n_exec)]
    batcher.attach(executors)
    return batcher, executors


def item(value: float) -> np.ndarray:
    return np.full((1, 2), value, dtype=np.float32)


def run(coro_fn) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(coro_fn())


def test_full_batch_is_taken_at_once_even_with_a_long_wait() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        batcher, (ex,) = make(loop, max_batch_size=4, max_wait_s=10.0)
        futures = [batcher.submit(item(i)) for i in range(4)]
        assert [b.size for b in ex.batches] == [4]  # no 10 s wait: the batch was full
        finish(batcher, ex.batches[0], loop)
        results = [await f for f in futures]
        assert [float(r.output[0, 0]) for r in results] == [0.0, 2.0, 4.0, 6.0]
        assert all(r.batch_size == 4 and r.batch_id == 1 for r in results)

    run(main)


def test_partial_batch_waits_for_max_wait_then_goes() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        batcher, (ex,) = make(loop, max_batch_size=8, max_wait_s=0.05)
        t0 = loop.time()
        futures = [batcher.submit(item(i)) for i in range(3)]
        assert ex.batches == []  # not full, oldest has not waited 50 ms
        while not ex.batches:
            await asyncio.sleep(0.005)
        assert ex.batches[0].size == 3
        assert ex.batches[0].start_mono - t0 >= 0.05 - 1e-6  # the rule's lower bound
        finish(batcher, ex.batches[0], loop)
        await asyncio.gather(*futures)

    run(main)


def test_greedy_takes_what_is_waiting_when_an_executor_frees() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        batcher, (ex,) = make(loop, max_batch_size=4, max_wait_s=0.0)
        first = batcher.submit(item(0))
        assert [b.size for b in ex.batches] == [1]  # greedy: goes alone at once
        rest = [batcher.submit(item(i)) for i in range(1, 7)]  # executor busy: 6 wait
        assert len(ex.batches) == 1 and batcher.queue_depth == 6
        finish(batcher, ex.batches[0], loop)
        assert [b.size for b in ex.batches] == [1, 4]  # capped at max_batch_size, FIFO
        assert [float(r.items[0, 0]) for r in ex.batches[1].requests] == [1, 2, 3, 4]
        finish(batcher, ex.batches[1], loop)
        assert [b.size for b in ex.batches] == [1, 4, 2]
        finish(batcher, ex.batches[2], loop)
        await asyncio.gather(first, *rest)

    run(main)


def test_one_free_executor_forms_the_batch_the_others_find_the_queue_empty() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        batcher, executors = make(loop, n_exec=3, max_batch_size=8, max_wait_s=0.03)
        futures = [batcher.submit(item(i)) for i in range(5)]
        while not any(ex.batches for ex in executors):
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.04)
        sizes = [[b.size for b in ex.batches] for ex in executors]
        assert sorted(sizes) == [[], [], [5]]  # one batch of all five, not 5 batches of one
        for ex in executors:
            for b in ex.batches:
                finish(batcher, b, loop)
        await asyncio.gather(*futures)

    run(main)


def test_queue_capacity_rejects_and_counts() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        batcher, (ex,) = make(loop, max_batch_size=1, queue_capacity=2)
        batcher.submit(item(0))  # in service, not waiting
        batcher.submit(item(1))
        batcher.submit(item(2))
        with pytest.raises(QueueFull):
            batcher.submit(item(3))
        assert batcher.queue_depth == 2 and batcher.counters.rejected == 1
        finish(batcher, ex.batches[0], loop)
        batcher.submit(item(4))  # room again
        assert batcher.queue_depth == 2

    run(main)


def test_timeout_removes_queued_requests_but_never_one_in_service() -> None:
    class Recorder(BatcherObserver):
        timed_out = 0

        def request_timed_out(self, request, now_mono):  # type: ignore[no-untyped-def]
            Recorder.timed_out += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        batcher = DynamicBatcher(BatcherConfig(max_batch_size=1, timeout_s=0.03), loop, Recorder())
        ex = HeldExecutor()
        batcher.attach([ex])
        in_service = batcher.submit(item(0))
        queued = batcher.submit(item(1))
        with pytest.raises(QueueTimeout):
            await queued  # the timer fires with no other event
        assert batcher.queue_depth == 0 and batcher.counters.timed_out == 1 and Recorder.timed_out == 1
        await asyncio.sleep(0.05)
        assert not in_service.done()  # in service past the timeout: not timed out
        finish(batcher, ex.batches[0], loop)
        assert (await in_service).batch_size == 1

    run(main)


def test_stall_holds_batches_until_it_ends() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        batcher, (ex,) = make(loop, max_batch_size=4)
        batcher.stall(0.05)
        t0 = loop.time()
        future = batcher.submit(item(0))
        assert ex.batches == []
        while not ex.batches:
            await asyncio.sleep(0.005)
        assert ex.batches[0].start_mono - t0 >= 0.05 - 2e-3
        finish(batcher, ex.batches[0], loop)
        assert (await future).queue_s >= 0.045

    run(main)


def test_failed_batch_fails_its_requests_and_frees_the_executor() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        batcher, (ex,) = make(loop, max_batch_size=2)
        bad = batcher.submit(item(0))
        batcher.on_batch_done(ex.batches[0], RuntimeError("boom"), loop.time(), 0.0)
        with pytest.raises(Exception, match="boom"):
            await bad
        good = batcher.submit(item(1))
        finish(batcher, ex.batches[1], loop)
        assert (await good).batch_id == 2

    run(main)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        BatcherConfig(max_batch_size=0)
    with pytest.raises(ValueError):
        BatcherConfig(max_batch_size=1, max_wait_s=-1)
    with pytest.raises(ValueError):
        BatcherConfig(max_batch_size=1, queue_capacity=0)
