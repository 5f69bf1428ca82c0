"""The dynamic batcher: one FIFO queue, `instances` executors pulling batches from it.

The rules are the ones in docs/design.md and docs/model.md (after Triton's dynamic batcher,
docs/sources.md#dynamic-batching-triton), and the simulator implements
the same ones, so that calibration compares like with like:

- When an executor is free and the queue is not empty: if `max_batch_size` requests are waiting it
  takes them at once; otherwise it waits until `max_batch_size` are waiting or the oldest request has
  waited `max_wait_s`, then takes up to `max_batch_size`. `max_wait_s = 0` is greedy batching.
- Only one free executor forms a batch at a time (Triton has a single scheduler thread): when the
  wait ends, the first free executor takes everything (up to the maximum); the others find the
  queue empty.
- A request that finds `queue_capacity` requests waiting is rejected (`QueueFull`, HTTP 429). A
  request still queued `timeout_s` after its arrival leaves as timed out (`QueueTimeout`, HTTP 504).
  Requests in service are never timed out.

Each HTTP request is one request here, whatever its number of items: the items of the requests in
a batch are concatenated into one tensor.

All methods run on the asyncio event loop thread; executors run batches on their own threads and
report back with `loop.call_soon_threadsafe(batcher.on_batch_done, ...)`. The batcher itself does
no I/O and never blocks, so it is driven by events (arrival, completion, timer) rather than by a
polling coroutine: `_pump` applies the rules and arms one timer for the next moment something can
change (the oldest request's wait or deadline expiring).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# Timers may fire a hair before their nominal time; treat "within a microsecond" as "reached" so a
# timer never re-arms itself for the same instant.
_EPS_S = 1e-6


class QueueFull(Exception):
    """The queue holds `queue_capacity` requests: the new one is rejected."""


class QueueTimeout(Exception):
    """The request was still queued at its deadline."""


class BatchFailed(Exception):
    """The model raised while running the batch that held this request."""


@dataclass(slots=True, eq=False)
class PendingRequest:
    """One request from arrival until its batch finishes."""

    items: np.ndarray  # shape [n_items, *item_shape]
    arrival_mono: float
    arrival_epoch: float
    deadline_mono: float
    future: asyncio.Future[RequestResult]
    start_mono: float = math.nan
    request_id: str | None = None  # the client's id (v2 "id" or X-Request-Id), for joining logs


@dataclass(slots=True, eq=False)
class Batch:
    """Requests taken together by one executor."""

    batch_id: int
    executor: int
    requests: list[PendingRequest]
    start_mono: float
    start_epoch: float
    end_mono: float = math.nan
    end_epoch: float = math.nan

    @property
    def size(self) -> int:
        """Number of requests (the batcher's unit)."""
        return len(self.requests)

    @property
    def n_items(self) -> int:
        """Number of items (rows of the model's input tensor)."""
        return sum(len(r.items) for r in self.requests)

    @property
    def compute_s(self) -> float:
        """Executor busy time: from taking the batch to having its outputs."""
        return self.end_mono - self.start_mono


@dataclass(slots=True)
class RequestResult:
    """What a request's future resolves to."""

    output: np.ndarray  # shape [n_items, *output_shape]
    batch_id: int
    batch_size: int
    queue_s: float
    compute_s: float


class ExecutorLike(Protocol):
    """Anything that accepts a batch and later reports it through `DynamicBatcher.on_batch_done`."""

    def submit(self, batch: Batch) -> None: ...


class BatcherObserver:
    """Hooks for metrics and logs; the default does nothing. Called on the event loop thread."""

    def batch_started(self, batch: Batch) -> None:
        """A batch left the queue."""

    def batch_finished(self, batch: Batch, error: BaseException | None) -> None:
        """A batch's outputs are ready (or it failed); `batch.end_*` are set."""

    def request_timed_out(self, request: PendingRequest, now_mono: float) -> None:
        """A request left the queue at its deadline."""


@dataclass
class BatcherConfig:
    """The batching policy (times in seconds)."""

    max_batch_size: int
    max_wait_s: float = 0.0
    queue_capacity: int = 1024
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if self.max_wait_s < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if self.queue_capacity < 1:
            raise ValueError("queue_capacity must be >= 1")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError("timeout_ms must be > 0 (or 0 for no timeout)")


@dataclass
class BatcherCounters:
    """Totals since start, for tests and /metrics."""

    submitted: int = 0
    rejected: int = 0
    timed_out: int = 0
    batches: int = 0
    completed: int = 0
    failed: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)


class DynamicBatcher:
    """See the module docstring. Create it on the event loop, then `attach` the executors."""

    def __init__(
        self,
        config: BatcherConfig,
        loop: asyncio.AbstractEventLoop,
        observer: BatcherObserver | None = None,
    ) -> None:
        self.config = config
        self._loop = loop
        self._observer = observer or BatcherObserver()
        self._queue: deque[PendingRequest] = deque()
        self._executors: list[ExecutorLike] = []
        self._free: deque[int] = deque()
        self._next_batch_id = 1
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = math.inf
        self._stall_until_mono = -math.inf
        self.counters = BatcherCounters()

    # -- wiring -------------------------------------------------------------------------------
    def attach(self, executors: Sequence[ExecutorLike]) -> None:
        """Register the executors; all start free."""
        self._executors = list(executors)
        self._free = deque(range(len(self._executors)))

    @property
    def queue_depth(self) -> int:
        """Requests waiting (not counting those in service)."""
        return len(self._queue)

    @property
    def busy_executors(self) -> int:
        """Executors running a batch."""
        return len(self._executors) - len(self._free)

    # -- events -------------------------------------------------------------------------------
    def submit(self, items: np.ndarray, request_id: str | None = None) -> asyncio.Future[RequestResult]:
        """Queue one request; the future resolves to a `RequestResult` or raises `QueueTimeout` /
        `BatchFailed`. Raises `QueueFull` at once when the queue is at capacity."""
        now = self._loop.time()
        self._expire(now)
        if len(self._queue) >= self.config.queue_capacity:
            self.counters.rejected += 1
            raise QueueFull(f"queue full ({self.config.queue_capacity} requests waiting)")
        timeout = self.config.timeout_s
        request = PendingRequest(
            items=items,
            arrival_mono=now,
            arrival_epoch=time.time(),
            deadline_mono=now + timeout if timeout is not None else math.inf,
            future=self._loop.create_future(),
            request_id=request_id,
        )
        self._queue.append(request)
        self.counters.submitted += 1
        self._pump()
        return request.future

    def on_batch_done(
        self,
        batch: Batch,
        outputs: list[np.ndarray] | BaseException,
        end_mono: float,
        end_epoch: float,
    ) -> None:
        """An executor finished `batch` (call on the loop thread): answer its requests, free the
        executor, and form the next batch."""
        batch.end_mono, batch.end_epoch = end_mono, end_epoch
        error = outputs if isinstance(outputs, BaseException) else None
        compute_s = batch.compute_s
        for i, request in enumerate(batch.requests):
            if request.future.done():  # the client went away; its handler was cancelled
                continue
            if error is not None:
                request.future.set_exception(BatchFailed(f"{type(error).__name__}: {error}"))
                continue
            assert not isinstance(outputs, BaseException)
            request.future.set_result(
                RequestResult(
                    output=outputs[i],
                    batch_id=batch.batch_id,
                    batch_size=batch.size,
                    queue_s=request.start_mono - request.arrival_mono,
                    compute_s=compute_s,
                )
            )
        if error is None:
            self.counters.completed += batch.size
        else:
            self.counters.failed += batch.size
        self._observer.batch_finished(batch, error)
        self._free.append(batch.executor)
        self._pump()

    def stall(self, seconds: float) -> None:
        """Stop forming batches for `seconds` (a test hook: a GC pause or hiccup on every executor;
        the executors also hold batches already running until then)."""
        self._stall_until_mono = max(self._stall_until_mono, self._loop.time() + seconds)
        self._pump()

    @property
    def stall_until_mono(self) -> float:
        """End of the current stall on the monotonic clock (−inf when none was asked for)."""
        return self._stall_until_mono

    # -- the rules ----------------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        # Every request has the same timeout, so deadlines are in arrival order: only the head of
        # the queue can have expired.
        queue = self._queue
        while queue and queue[0].deadline_mono <= now + _EPS_S:
            request = queue.popleft()
            self.counters.timed_out += 1
            if not request.future.done():
                request.future.set_exception(QueueTimeout("timed out in the queue"))
            self._observer.request_timed_out(request, now)

    def _pump(self) -> None:
        now = self._loop.time()
        self._expire(now)
        queue, cfg = self._queue, self.config
        stalled = now < self._stall_until_mono
        while not stalled and self._free and queue:
            full = len(queue) >= cfg.max_batch_size
            if not full and now - queue[0].arrival_mono < cfg.max_wait_s - _EPS_S:
                break
            self._dispatch(now, min(len(queue), cfg.max_batch_size))
        # Arm one timer for the next moment the rules could act without a new event.
        wake = math.inf
        if queue:
            wake = queue[0].deadline_mono
            if stalled:
                wake = min(wake, self._stall_until_mono)
            elif self._free:
                wake = min(wake, queue[0].arrival_mono + cfg.max_wait_s)
        self._arm(wake)

    def _dispatch(self, now: float, n: int) -> None:
        executor = self._free.popleft()
        requests = [self._queue.popleft() for _ in range(n)]
        for request in requests:
            request.start_mono = now
        batch = Batch(
            batch_id=self._next_batch_id,
            executor=executor,
            requests=requests,
            start_mono=now,
            start_epoch=time.time(),
        )
        self._next_batch_id += 1
        self.counters.batches += 1
        self.counters.batch_sizes[n] = self.counters.batch_sizes.get(n, 0) + 1
        self._observer.batch_started(batch)
        self._executors[executor].submit(batch)

    def _arm(self, wake_mono: float) -> None:
        if wake_mono == self._timer_when:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_when = wake_mono
        if wake_mono < math.inf:
            self._timer = self._loop.call_at(wake_mono, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = math.inf
        self._pump()
