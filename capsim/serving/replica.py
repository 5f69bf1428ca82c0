"""One replica: a FIFO queue, a dynamic batcher and `instances` model executors pulling from it.

The batching rules are Triton's dynamic batcher (docs/model.md states them exactly; the reference
server implements the same ones so that calibration compares like with like):

- when an executor is free and the queue is not empty: with `max_batch_size` requests waiting it
  takes them at once; otherwise it waits until `max_batch_size` are waiting or the oldest request
  has waited `max_wait_ms`, then takes up to `max_batch_size`;
- only one free executor forms a batch at a time (Triton has one scheduler handing batches to free
  instances); the others stay idle until it has taken its batch;
- a request still queued at its deadline (`timeout_ms` after arrival) leaves as timed out; one that
  finds `queue_capacity` requests waiting is rejected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy

from capsim.metrics.levels import Level
from capsim.metrics.request_log import COMPLETED, REJECTED, TIMED_OUT, RequestLog
from capsim.servicetime.base import BatchSampler

# Float slack when comparing a batching deadline with the clock: a timer scheduled for `deadline`
# can fire a rounding error early, and must not start a second, zero-length wait.
_CLOCK_SLACK_S = 1e-12


def _fire_unless_triggered(event: simpy.Event) -> Callable[[simpy.Event], None]:
    """A timer callback that succeeds `event` unless something else already has."""

    def fire(_timer: simpy.Event) -> None:
        if not event.triggered:
            event.succeed()

    return fire


@dataclass(frozen=True)
class ReplicaConfig:
    """The per-replica settings, in seconds."""

    instances: int
    max_batch_size: int
    max_wait_s: float
    queue_capacity: int | None
    timeout_s: float | None
    overhead_s: float


@dataclass
class SharedLevels:
    """Fleet-wide time-weighted quantities that every replica updates."""

    busy_executors: Level
    in_service: Level


class Replica:
    """A replica's queue and executors (one SimPy process per executor)."""

    def __init__(
        self,
        env: simpy.Environment,
        index: int,
        config: ReplicaConfig,
        sample_s: BatchSampler,
        log: RequestLog,
        levels: SharedLevels,
        on_finished: Callable[[int], None],
    ) -> None:
        self.env = env
        self.index = index
        self.config = config
        self._sample_s = sample_s
        self._log = log
        self._levels = levels
        self._on_finished = on_finished
        self.queue: deque[int] = deque()  # request ids, oldest first
        self.queue_level = Level()  # per replica, so a timeout can be booked at its own deadline
        self.in_service = 0
        self._idle: deque[simpy.Event] = deque()
        self._forming = False  # an executor is waiting for its batch to fill
        self._fill_event: simpy.Event | None = None
        self.processes = [env.process(self._executor()) for _ in range(config.instances)]

    # -- arrivals ---------------------------------------------------------------------------------

    def outstanding(self) -> int:
        """Requests queued or in service here (what load balancers compare)."""
        if self.config.timeout_s is not None:
            self.expire(self.env.now)
        return len(self.queue) + self.in_service

    def enqueue(self, request_id: int) -> None:
        """A request arrives at this replica now: queue it, or reject it if the queue is full."""
        now = self.env.now
        config = self.config
        if config.timeout_s is not None:
            self.expire(now)
        if config.queue_capacity is not None and len(self.queue) >= config.queue_capacity:
            row = request_id - self._log.base
            self._log.outcome[row] = REJECTED
            self._log.end_s[row] = now
            self._log.replica[row] = self.index
            self._on_finished(1)
            return
        self.queue.append(request_id)
        self.queue_level.change(now, 1)
        if self._forming:
            if self._fill_event is not None and len(self.queue) >= config.max_batch_size:
                self._fill_event.succeed()
                self._fill_event = None
        elif self._idle:
            self._idle.popleft().succeed()

    def expire(self, now: float) -> None:
        """Remove queued requests whose deadline has passed, booking each at its deadline."""
        timeout_s = self.config.timeout_s
        if timeout_s is None:
            return
        queue, log = self.queue, self._log
        arrival = log.arrival_s
        expired = 0
        while queue:
            row = queue[0] - log.base
            deadline = arrival[row] + timeout_s
            if deadline > now:
                break
            queue.popleft()
            log.outcome[row] = TIMED_OUT
            log.end_s[row] = deadline
            log.replica[row] = self.index
            # Deadlines are in arrival order (FIFO, one timeout), so they never go back in time.
            self.queue_level.change(float(deadline), -1)
            expired += 1
        if expired:
            self._on_finished(expired)

    # -- executors --------------------------------------------------------------------------------

    def _wake_waiting_executor(self) -> None:
        if self.queue and self._idle and not self._forming:
            self._idle.popleft().succeed()

    def _executor(self) -> Generator[simpy.Event, Any, None]:
        env, config, log = self.env, self.config, self._log
        max_batch, max_wait_s = config.max_batch_size, config.max_wait_s
        queue = self.queue
        busy, in_service = self._levels.busy_executors, self._levels.in_service
        while True:
            if not queue or self._forming:
                idle = env.event()
                self._idle.append(idle)
                yield idle
                continue
            if config.timeout_s is not None:
                self.expire(env.now)
                if not queue:
                    continue
            if max_wait_s > 0 and len(queue) < max_batch:
                deadline = log.arrival_s[queue[0] - log.base] + max_wait_s
                if deadline > env.now + _CLOCK_SLACK_S:
                    self._forming = True
                    filled = self._fill_event = env.event()
                    timer = env.timeout(deadline - env.now)
                    timer.callbacks.append(_fire_unless_triggered(filled))
                    yield filled
                    self._forming = False
                    self._fill_event = None
                    continue  # look again: the batch filled, the oldest waited long enough, or it timed out
            # Take the batch.
            now = env.now
            size = min(max_batch, len(queue))
            batch = [queue.popleft() for _ in range(size)]
            self.queue_level.change(now, -size)
            self.in_service += size
            busy.change(now, 1)
            in_service.change(now, size)
            self._wake_waiting_executor()
            base = log.base
            start_s, batch_size, replica = log.start_s, log.batch_size, log.replica
            for request_id in batch:
                row = request_id - base
                start_s[row] = now
                batch_size[row] = size
                replica[row] = self.index
            yield env.timeout(self._sample_s(size))
            now = env.now
            done_s = now + config.overhead_s
            base = log.base  # the log may have been compacted or grown while we served
            end_s, outcome = log.end_s, log.outcome
            for request_id in batch:
                row = request_id - base
                end_s[row] = done_s
                outcome[row] = COMPLETED
            self.in_service -= size
            busy.change(now, -1)
            in_service.change(now, -size)
            self._on_finished(size)
