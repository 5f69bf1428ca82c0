"""The async queue and its workers. docs/model.md ("Async queue") states the rules.

The API tier accepts every job at its arrival (202): the job id joins a FIFO queue at once. One
dispatcher process hands batches to free workers, so no process exists per job or per worker:
  - when a worker is free and jobs wait: if `max_batch_size` wait, the longest-free worker takes
    them now; otherwise it takes up to `max_batch_size` once that many wait or the oldest has waited
    `batch_wait_ms` (the real-time batcher's rule; 0 takes what is there);
  - the batch takes the service time of its size, then `store_write_ms` to write results; the job's
    result is ready at the end of the write, and the worker is free again;
  - the client polls at submit + k × poll_interval (k = 1, 2, ...) and sees the result at the first
    poll at or after it is ready: seen = submit + max(1, ceil((ready − submit) / interval)) × interval.
Workers come and go like Kafka consumers (capsim/serving/pool.py): a removed worker finishes its
batch first. The queue is FIFO over job ids, which increase with arrival time, so it is the range
[head, arrived) of the request log and costs nothing to keep.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np
import simpy

from capsim.metrics.live import RunningIntegral
from capsim.metrics.request_log import COMPLETED, RequestLog
from capsim.metrics.tally import ValueDistribution
from capsim.servicetime.base import BatchSampler
from capsim.serving.asyncqueue.spec import AsyncServing
from capsim.serving.pool import ColdStarter, PoolLevels

# A poll that lands within this of the moment the result is stored sees it (float noise in
# submit + k × interval must not cost a whole interval).
_POLL_TIE_S = 1e-9


class Worker:
    """One worker pod: its service-time draws and whether it is leaving."""

    __slots__ = ("batch_ids", "batch_start_s", "busy", "index", "leaving", "sampler")

    def __init__(self, index: int, sampler: BatchSampler) -> None:
        self.index = index
        self.sampler = sampler
        self.busy = False
        self.leaving = False
        self.batch_ids = np.empty(0, dtype=np.int64)
        self.batch_start_s = 0.0


def seen_time_s(submit_s: np.ndarray, ready_s: float, interval_s: float) -> np.ndarray:
    """When each client's poll first finds the result: the first poll at submit + k × interval
    (k >= 1) at or after `ready_s`."""
    k = np.maximum(np.ceil((ready_s - submit_s) / interval_s - _POLL_TIE_S / interval_s), 1.0)
    return submit_s + k * interval_s


class AsyncQueue:
    """The queue, the dispatcher and the worker pool of one replication."""

    def __init__(
        self,
        env: simpy.Environment,
        serving: AsyncServing,
        make_sampler: Any,
        starter_rng: np.random.Generator,
        log: RequestLog,
        warmup_s: float,
        result_ms: ValueDistribution,
        poll_delay_ms: ValueDistribution,
    ) -> None:
        self.env = env
        self.serving = serving
        self.make_sampler = make_sampler
        self.log = log
        self.warmup_s = warmup_s
        self.result_ms = result_ms
        self.poll_delay_ms = poll_delay_ms
        self.levels = PoolLevels(serving.workers, serving.cold_start.warm_pool)
        self.starter = ColdStarter(env, serving.cold_start, starter_rng, self.levels)
        self.workers: list[Worker] = []
        self.free: deque[Worker] = deque()
        self.next_index = 0
        self.desired = serving.workers
        self.head = 0  # id of the oldest job not yet taken
        self.appended = 0  # jobs appended to the log (arrived, or due within the current chunk)
        self.finished = 0  # jobs whose result is stored
        self.polls = 0  # client polls (of jobs arrived after warm-up), the API tier's read load
        self.done = RunningIntegral()  # jobs with stored results: for the in-flight integral
        self._arrived_area = 0.0
        self._arrived_count = 0
        self._area_at_s = 0.0
        self._unread: deque[np.ndarray] = deque()  # arrival times not yet folded into _arrived_area
        self._track_in_flight = serving.autoscaling is not None and serving.autoscaling.metric == "concurrency"
        self._wake: simpy.Event | None = None
        self._feeding = True
        self.drained = env.event()
        self.batch_wait_s = serving.batch_wait_ms / 1000.0
        self.write_s = serving.store_write_ms / 1000.0
        self.interval_s = serving.poll_interval_ms / 1000.0
        for _ in range(serving.workers):
            self._add_worker(initial=True)
        env.process(self._dispatch())

    # -- pool ------------------------------------------------------------------------------------

    def _add_worker(self, initial: bool = False) -> None:
        worker = Worker(self.next_index, self.make_sampler(self.next_index))
        self.next_index += 1
        self.workers.append(worker)
        self.free.append(worker)
        if not initial:
            self.levels.ready.set(self.env.now, len(self.workers))
            self._poke()

    def scale_to(self, desired: int) -> None:
        """Start or stop workers until `desired` are running or starting."""
        now = self.env.now
        self.desired = desired
        self.levels.desired.set(now, desired)
        running = [w for w in self.workers if not w.leaving]
        current = len(running) + len(self.starter.pending)
        for _ in range(desired - current):
            self.starter.start(self._add_worker)
        for _ in range(current - desired):
            if self.starter.cancel_one():
                continue
            # A free worker leaves at once; otherwise the newest finishes its batch and leaves.
            idle = [w for w in self.free if not w.leaving]
            worker = idle[-1] if idle else max((w for w in self.workers if not w.leaving), key=lambda w: w.index)
            worker.leaving = True
            if not worker.busy:
                self.free.remove(worker)
                self._remove(worker)

    def _remove(self, worker: Worker) -> None:
        now = self.env.now
        self.workers.remove(worker)
        self.levels.ready.set(now, len(self.workers))
        self.levels.billed.add(now, -1)

    # -- arrivals --------------------------------------------------------------------------------

    def feed(self, chunks: Iterator[np.ndarray]) -> Generator[simpy.Event, Any, None]:
        """Append each chunk of submissions when the clock reaches its first one."""
        for times in chunks:
            if times[0] > self.env.now:
                yield self.env.timeout(float(times[0]) - self.env.now)
            self.log.append_arrivals(times)
            if self._track_in_flight:
                self._unread.append(times)
            self.appended += times.size
            self._poke()
        self._feeding = False
        self._check_drained()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _arrival_s(self, job_id: int) -> float:
        return float(self.log.arrival_s[job_id - self.log.base])

    def _arrived_by(self, now: float) -> int:
        """Jobs submitted by `now` (the queue's tail)."""
        log = self.log
        lo, hi = self.head - log.base, self.appended - log.base
        return self.head + int(np.searchsorted(log.arrival_s[lo:hi], now, side="right"))

    def waiting(self, now: float) -> int:
        """Jobs accepted and not yet taken by a worker (the queue depth)."""
        return self._arrived_by(now) - self.head

    def in_flight_area(self, now: float) -> float:
        """The time integral up to `now` (called with non-decreasing times) of jobs accepted and
        without a stored result: the integral of arrivals, minus that of stored results."""
        self._arrived_area += self._arrived_count * (now - self._area_at_s)
        while self._unread:
            times = self._unread[0]
            due = times[: int(np.searchsorted(times, now, side="right"))]
            self._arrived_area += float(np.sum(now - due))
            self._arrived_count += due.size
            if due.size < times.size:
                self._unread[0] = times[due.size :]
                break
            self._unread.popleft()
        self._area_at_s = now
        return self._arrived_area - self.done.area_at(now)

    # -- dispatch -----------------------------------------------------------------------------------

    def _dispatch(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        batch = self.serving.max_batch_size
        while True:
            if not self.free or self.head >= self.appended:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            now = env.now
            tail = self._arrived_by(now)
            queued = tail - self.head
            oldest_s = self._arrival_s(self.head)
            if queued >= batch or (queued > 0 and now >= oldest_s + self.batch_wait_s):
                self._start(self.free.popleft(), min(queued, batch), now)
                continue
            full_id = self.head + batch - 1
            full_s = self._arrival_s(full_id) if full_id < self.appended else math.inf
            wake_at = min(full_s, oldest_s + self.batch_wait_s)
            self._wake = env.event()
            yield env.any_of([self._wake, env.timeout(max(wake_at - now, 0.0))])
            self._wake = None

    def _start(self, worker: Worker, size: int, now: float) -> None:
        ids = np.arange(self.head, self.head + size, dtype=np.int64)
        self.head += size
        worker.busy = True
        worker.batch_ids = ids
        worker.batch_start_s = now
        self.levels.busy.add(now, 1)
        self.levels.in_service.add(now, size)
        duration_s = worker.sampler(size) + self.write_s
        self.env.timeout(duration_s, worker).callbacks.append(self._finish)

    def _finish(self, event: simpy.Event) -> None:
        worker: Worker = event.value  # type: ignore[assignment]
        ready_s = self.env.now
        ids, size = worker.batch_ids, worker.batch_ids.size
        log = self.log
        rows = ids - log.base
        submit_s = log.arrival_s[rows]
        seen_s = seen_time_s(submit_s, ready_s, self.interval_s)
        log.start_s[rows] = worker.batch_start_s
        log.end_s[rows] = seen_s
        log.batch_size[rows] = size
        log.replica[rows] = worker.index
        log.outcome[rows] = COMPLETED
        measured = submit_s >= self.warmup_s
        if measured.any():
            self.result_ms.add((ready_s - submit_s[measured]) * 1000.0)
            self.poll_delay_ms.add((seen_s[measured] - ready_s) * 1000.0)
            self.polls += int(np.rint((seen_s[measured] - submit_s[measured]) / self.interval_s).sum())
        self.finished += size
        self.done.add(ready_s, size)
        self.levels.busy.add(ready_s, -1)
        self.levels.in_service.add(ready_s, -size)
        worker.busy = False
        worker.batch_ids = np.empty(0, dtype=np.int64)
        if worker.leaving:
            self._remove(worker)
        else:
            self.free.append(worker)
            self._poke()
        self._check_drained()

    def _check_drained(self) -> None:
        if not self._feeding and self.finished == self.appended and not self.drained.triggered:
            self.drained.succeed()

    def busy_workers(self) -> list[Worker]:
        """Workers with a batch in progress."""
        return [w for w in self.workers if w.busy]
