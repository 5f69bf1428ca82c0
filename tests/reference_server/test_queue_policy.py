"""The queue's default bounds, and the batcher keeping accepted requests inside them under ten
times the load it can serve (a fake executor that takes 10 ms per batch; no torch, no HTTP)."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from reference_server.batcher import Batch, BatcherConfig, DynamicBatcher, QueueFull, QueueTimeout
from reference_server.queue_policy import (
    MAX_AUTO_QUEUE_CAPACITY,
    QUEUE_DELAY_FLOOR_S,
    default_queue_capacity,
    default_timeout_s,
    resolve_queue_bounds,
)


def test_default_timeout_is_ten_full_batches_plus_the_window_never_under_the_floor() -> None:
    assert default_timeout_s(max_batch_s=0.020, max_wait_s=0.005) == pytest.approx(0.205)
    assert default_timeout_s(max_batch_s=0.0001, max_wait_s=0.0) == QUEUE_DELAY_FLOOR_S


def test_default_capacity_is_what_the_executors_start_within_the_timeout() -> None:
    assert default_queue_capacity(0.2, max_batch_s=0.02, max_batch_size=1, instances=1) == 10
    assert default_queue_capacity(0.2, max_batch_s=0.02, max_batch_size=8, instances=2) == 160
    assert default_queue_capacity(0.05, max_batch_s=1e-5, max_batch_size=1, instances=1) == MAX_AUTO_QUEUE_CAPACITY
    assert default_queue_capacity(None, max_batch_s=0.02, max_batch_size=1, instances=1) == MAX_AUTO_QUEUE_CAPACITY
    assert default_queue_capacity(0.001, max_batch_s=0.5, max_batch_size=4, instances=1) == 4  # one full batch


def test_given_bounds_win_and_zero_means_no_timeout() -> None:
    common = {"max_batch_s": 0.02, "max_wait_s": 0.0, "max_batch_size": 1, "instances": 1}
    given = resolve_queue_bounds(300.0, 7, **common)
    assert (given.timeout_s, given.queue_capacity, given.timeout_auto, given.capacity_auto) == (0.3, 7, False, False)
    never = resolve_queue_bounds(0.0, None, **common)
    assert never.timeout_s is None and never.queue_capacity == MAX_AUTO_QUEUE_CAPACITY
    auto = resolve_queue_bounds(None, None, **common)
    assert auto.timeout_s == pytest.approx(0.2) and auto.queue_capacity == 10 and auto.timeout_auto


class SlowExecutor:
    """Finishes each batch `batch_s` after taking it (on the event loop's timer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, batch_s: float) -> None:
        self.loop, self.batch_s = loop, batch_s
        self.batcher: DynamicBatcher | None = None

    def submit(self, batch: Batch) -> None:
        assert self.batcher is not None
        outputs = [r.items for r in batch.requests]
        self.loop.call_later(self.batch_s, lambda: self.batcher.on_batch_done(batch, outputs, self.loop.time(), 0.0))  # type: ignore[union-attr]


def test_ten_times_overload_keeps_accepted_requests_inside_the_bound_and_recovers() -> None:
    batch_s = 0.010  # capacity 100 req/s at max batch 1
    bounds = resolve_queue_bounds(None, None, max_batch_s=batch_s, max_wait_s=0.0, max_batch_size=1, instances=1)
    assert bounds.timeout_s is not None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        config = BatcherConfig(max_batch_size=1, queue_capacity=bounds.queue_capacity, timeout_s=bounds.timeout_s)
        batcher = DynamicBatcher(config, loop)
        executor = SlowExecutor(loop, batch_s)
        executor.batcher = batcher
        batcher.attach([executor])
        futures: list[asyncio.Future] = []
        rejected = 0
        burst_end = loop.time() + 0.5
        while loop.time() < burst_end:  # ~1000 req/s: 10x what one 10 ms executor serves
            try:
                futures.append(batcher.submit(np.zeros((1, 2), np.float32)))
            except QueueFull:
                rejected += 1
            await asyncio.sleep(0.001)
        results = await asyncio.gather(*futures, return_exceptions=True)
        served = [r for r in results if not isinstance(r, BaseException)]
        timed_out = [r for r in results if isinstance(r, QueueTimeout)]
        assert len(served) + len(timed_out) == len(futures)  # nothing lost
        assert served and rejected + len(timed_out) > len(served)  # most of a 10x burst is turned away
        # The rule: no accepted request waited past the bound (an unbounded queue made them wait
        # for everything before them: seconds, growing with the burst).
        assert max(r.queue_s for r in served) <= bounds.timeout_s + 1e-6
        # Recovery: once the burst is over, the queue is empty within one bound and a new request
        # starts at once.
        await asyncio.sleep(bounds.timeout_s + 2 * batch_s)
        assert batcher.queue_depth == 0
        after = await batcher.submit(np.zeros((1, 2), np.float32))
        assert math.isclose(after.queue_s, 0.0, abs_tol=1e-3)

    asyncio.run(main())
