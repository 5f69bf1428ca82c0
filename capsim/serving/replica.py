"""One replica: a FIFO queue, a dynamic batcher and `instances` model executors serving from it.

The batching rules are Triton's dynamic batcher (docs/model.md states them exactly; the reference
server implements the same ones so that calibration compares like with like):

- when an executor is free and the queue is not empty: with `max_batch_size` requests waiting it
  takes them at once; otherwise it waits until `max_batch_size` are waiting or the oldest request
  has waited `max_wait_ms`, then takes up to `max_batch_size`;
- one batch forms at a time (Triton has one scheduler handing batches to free instances): the
  other free executors stay idle until it has gone;
- a request still queued at its deadline (`timeout_ms` after arrival) leaves as timed out; one that
  finds `queue_capacity` requests waiting is rejected.

The replica is an event-driven state machine on the SimPy kernel: a busy executor is one pending
completion event, a forming batch one pending timer. There is no process per executor or per
request; this halves the kernel work per request compared with executor generator processes
(measured by benchmarks/simulate_speed.py) while keeping every rule above exact.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import simpy

from capsim.metrics.live import LiveMetrics
from capsim.metrics.request_log import REJECTED, TIMED_OUT, BatchBook, RequestLog
from capsim.servicetime.base import BatchSampler
from capsim.serving.frontend import FrontEnd, FrontEndDraws

APPLY_AT = BatchBook.APPLY_AT

# Float slack when comparing a batching deadline with the clock: a timer scheduled for `deadline`
# can fire a rounding error early, and must not start a second, zero-length wait.
_CLOCK_SLACK_S = 1e-12


@dataclass(frozen=True)
class ReplicaConfig:
    """The per-replica settings, in seconds."""

    instances: int
    max_batch_size: int
    max_wait_s: float
    queue_capacity: int | None
    timeout_s: float | None
    overhead_s: float
    frontend_workers: int = 0  # 0: no front-end stage (requests reach the queue on arrival)


class Replica:
    """A replica's queue, batcher and executors."""

    def __init__(
        self,
        env: simpy.Environment,
        index: int,
        config: ReplicaConfig,
        sample_s: BatchSampler,
        log: RequestLog,
        on_finished: Callable[[int], None],
        loads: list[int],
        on_drained: Callable[[Replica], None] | None = None,
        live: LiveMetrics | None = None,
        frontend_sample_s: Callable[[], float] | None = None,
    ) -> None:
        self.env = env
        self.index = index
        self.config = config
        self._sample_s = sample_s
        self._log = log
        self._on_finished = on_finished
        # Outstanding requests (queued or in service) of every ready replica, kept current here at
        # this replica's slot, so that a load balancer reads plain integers on every request.
        self._loads = loads
        self.slot = 0
        self._on_drained = on_drained
        self.draining = False
        self._live = live  # integrated metrics for autoscalers (None when nothing reads them)
        self.queue: deque[int] = deque()  # request ids, oldest first
        self.idle_executors = config.instances
        self.in_service = 0  # requests in batches being served
        self._forming_timer: simpy.Event | None = None  # pending max-wait timer of the forming batch
        self._running: set[simpy.Event] = set()  # completion events of the batches in service
        self._overhead_s = config.overhead_s
        # The settings the hot path reads, as plain attributes (one lookup instead of two).
        self._timeout_s = config.timeout_s
        self._max_batch = config.max_batch_size
        self._max_wait_s = config.max_wait_s
        self._capacity = config.queue_capacity
        # Where finished batches are booked: the book's list appends, bound once.
        self._book = book = log.batch_book(index)
        self._booked = book.ids  # its length says when to spread it onto rows
        self._book_ids, self._book_start_s, self._book_end_s = book.ids.append, book.start_s.append, book.end_s.append
        # A front end (capsim.serving.frontend) puts a queue before the batcher's: requests enter the
        # batcher's queue later than they arrived, and the batching window counts from that entry.
        # Without one, `enqueue` is the queue's own entry and nothing on the hot path changes.
        self._frontend: FrontEnd | None = None
        # A front end whose loop fires the batching timer late (serving.frontend.
        # window_late_quantiles_ms) comes as `FrontEndDraws`: every batching timer is then delayed by
        # a lateness draw. None: one None check per batching timer, nothing else.
        self._window_late_s: Callable[[], float] | None = None
        if isinstance(frontend_sample_s, FrontEndDraws):
            self._window_late_s = frontend_sample_s.window_late_s
            frontend_sample_s = frontend_sample_s.draw
        if config.frontend_workers and frontend_sample_s is not None:
            self._frontend = FrontEnd(env, config.frontend_workers, frontend_sample_s, self._from_frontend)

    def queued_or_in_service(self) -> int:
        """Requests in the front end, queued or in service here (call `expire` first when requests
        can time out)."""
        inside = self._frontend.inside if self._frontend is not None else 0
        return inside + len(self.queue) + self.in_service

    def attach(self, loads: list[int], slot: int) -> None:
        """Report the outstanding count into `loads[slot]` from now on."""
        self._loads = loads
        self.slot = slot
        loads[slot] = self.queued_or_in_service()

    def hand_over_queue(self) -> None:
        """Give up every queued request (the caller re-routes them); batches in service stay."""
        count = len(self.queue)
        self.queue.clear()
        if self._frontend is not None:
            self._frontend.entered_s.clear()  # it holds exactly the queued requests
        self._loads[self.slot] -= count
        if self._live is not None:
            self._live.concurrency.add(max(self.env.now, self._live.concurrency.last_s), -count)
        self._forming_timer = None
        self._check_drained()

    def start_draining(self, now: float) -> None:
        """Leave the balancer: finish what is queued and in service, then report drained."""
        self.draining = True
        self.expire(now)
        self._check_drained()

    def _check_drained(self) -> None:
        if self._frontend is not None and self._frontend.inside:
            return  # requests still in the front end will join the queue
        if self.draining and not self.queue and self.in_service == 0 and self._on_drained is not None:
            on_drained, self._on_drained = self._on_drained, None
            on_drained(self)

    def _admit(self, request_id: int, now: float) -> None:
        """A request arrives at a replica with a front end: it is outstanding here from now on."""
        self._loads[self.slot] += 1
        if self._live is not None:
            self._live.concurrency.add(now, 1)
        assert self._frontend is not None
        self._frontend.admit(request_id, now)

    def _from_frontend(self, request_id: int, now: float) -> None:
        # `enqueue` counts the request again as it joins the queue.
        self._loads[self.slot] -= 1
        if self._live is not None:
            self._live.concurrency.add(now, -1)
        timeout_s = self._timeout_s
        if timeout_s is not None:
            deadline_s = self._log.arrival_time_s(request_id) + timeout_s
            if deadline_s - now <= _CLOCK_SLACK_S:  # its deadline passed in the front end
                row = request_id - self._log.base
                self._log.outcome[row] = TIMED_OUT
                self._log.end_s[row] = min(deadline_s, now)
                self._log.replica[row] = self.index
                self._on_finished(1)
                if self.draining:
                    self._check_drained()
                return
        assert self._frontend is not None
        self._frontend.entered_s[request_id] = now
        self.enqueue(request_id, now, now, True)
        if self.draining:
            self._check_drained()

    def enqueue(
        self, request_id: int, now: float, arrival_s: float | None = None, passed_frontend: bool = False
    ) -> None:
        """A request reaches the replica at time `now` (with a front end, it goes there first; it
        comes back with `passed_frontend`): queue it, or reject it if the queue is full.

        `now` may be later than the kernel clock when the fleet handles arrivals ahead of it (no
        kernel event falls in between); every time below is therefore taken from `now`.
        `arrival_s` is the time the request joined the queue when the caller has it at hand (a fresh
        arrival or one leaving the front end: `now`), sparing a lookup; re-routed requests leave it None.
        """
        if self._frontend is not None and not passed_frontend:
            self._admit(request_id, now)
            return
        if self._timeout_s is not None:
            self.expire(now)
        queue = self.queue
        capacity = self._capacity
        if capacity is not None and len(queue) >= capacity and not self.idle_executors:
            self._reject(request_id, now)  # no room to wait, and no executor to start at once
            return
        queue.append(request_id)
        self._loads[self.slot] += 1
        if self._live is not None:
            self._live.concurrency.add(now, 1)
        if self.idle_executors:
            if len(queue) == 1 and self._max_wait_s == 0:
                self._start_batch(1, now)  # greedy batching, alone in the queue: it goes at once
            # While a batch is forming only a full queue can start it early: skip the call otherwise.
            elif self._forming_timer is None or len(queue) >= self._max_batch:
                self._dispatch(now, arrival_s if len(queue) == 1 else None)
        if capacity is not None and len(queue) > capacity:
            # The capacity counts waiting requests: the newcomer did not start and finds no room.
            queue.pop()
            self._loads[self.slot] -= 1
            if self._live is not None:
                self._live.concurrency.add(now, -1)
            self._reject(request_id, now)

    def _reject(self, request_id: int, now: float) -> None:
        if self._frontend is not None:
            self._frontend.entered_s.pop(request_id, None)
        log = self._log
        row = request_id - log.base
        log.outcome[row] = REJECTED
        log.end_s[row] = now
        log.replica[row] = self.index
        self._on_finished(1)

    def expire(self, now: float) -> None:
        """Remove queued requests whose deadline has passed; each is booked at its deadline."""
        timeout_s = self.config.timeout_s
        if timeout_s is None:
            return
        queue, log = self.queue, self._log
        expired = 0
        while queue:
            row = queue[0] - log.base
            deadline = log.arrival_s[row] + timeout_s
            if deadline - now > _CLOCK_SLACK_S:
                break  # (a deadline a rounding error away counts as reached: it must expire, not start)
            expired_id = queue.popleft()
            if self._frontend is not None:
                del self._frontend.entered_s[expired_id]
            log.outcome[row] = TIMED_OUT
            # Never later than now: a deadline a rounding error ahead is booked now, when it leaves.
            log.end_s[row] = deadline if deadline <= now else now
            log.replica[row] = self.index
            expired += 1
        if expired:
            if self._live is not None:
                self._live.concurrency.add(max(now, self._live.concurrency.last_s), -expired)
            self._loads[self.slot] -= expired
            self._on_finished(expired)
            if self.draining:
                self._check_drained()

    def _dispatch(self, now: float, oldest_s: float | None = None) -> None:
        """Start batches while an executor is free and the batching rule allows one. `oldest_s`:
        the arrival time of the oldest queued request, when the caller knows it."""
        config = self.config
        queue = self.queue
        max_batch = self._max_batch
        while self.idle_executors and queue:
            if len(queue) < max_batch and self._max_wait_s > 0:
                if self._forming_timer is not None:
                    return  # the forming batch waits for its timer or for more requests
                # A Python float: a numpy scalar here would reach the kernel's clock and make every
                # later time computation numpy arithmetic.
                if oldest_s is None:
                    frontend = self._frontend
                    oldest_s = self._log.arrival_time_s(queue[0]) if frontend is None else frontend.entered_s[queue[0]]
                due_s = oldest_s + config.max_wait_s
                if config.timeout_s is not None and config.timeout_s < config.max_wait_s:
                    # The oldest times out first (its deadline counts from its arrival, before any
                    # front end); then the next oldest may already be due.
                    arrival_s = oldest_s if self._frontend is None else self._log.arrival_time_s(queue[0])
                    due_s = min(due_s, arrival_s + config.timeout_s)
                if due_s - now > _CLOCK_SLACK_S:
                    # A late timer closes the window later; a batch that fills up meanwhile still goes
                    # at once (enqueue), and when the timer fires the batch is due (it passed due_s).
                    fire_s = due_s if self._window_late_s is None else due_s + self._window_late_s()
                    timer = self._forming_timer = self.env.timeout(fire_s - self.env.now)
                    timer.callbacks.append(self._on_max_wait)
                    return
            self._forming_timer = None  # a full (or due) batch goes now; a pending timer is stale
            oldest_s = None  # (the batch takes the oldest request)
            waiting = len(queue)
            self._start_batch(max_batch if waiting > max_batch else waiting, now)

    def _on_max_wait(self, timer: simpy.Event) -> None:
        if timer is not self._forming_timer:
            return  # the batch already went (it filled up); this timer is stale
        self._forming_timer = None
        now = self.env.now
        if self.config.timeout_s is not None:
            self.expire(now)
        self._dispatch(now)

    def _start_batch(self, size: int, now: float) -> None:
        env, queue = self.env, self.queue
        self.idle_executors -= 1
        self.in_service += size
        if size == 1:
            batch = [queue.popleft()]
        elif size == len(queue):  # a partial batch takes everything waiting: copy and clear in C
            batch = list(queue)
            queue.clear()
        else:
            batch = [queue.popleft() for _ in range(size)]
        if self._frontend is not None:
            entered = self._frontend.entered_s
            for request_id in batch:
                del entered[request_id]
        if self._live is not None:
            self._live.busy.add(now, 1)
        done = env.timeout(now - env.now + self._sample_s(size), (batch, now))
        done.callbacks.append(self._on_batch_done)
        self._running.add(done)

    def _on_batch_done(self, event: simpy.Event) -> None:
        self._running.discard(event)
        # (No typing.cast here: `tuple[...]` would build new alias objects on every batch.)
        batch, start_s = event.value  # type: ignore[misc]
        now = self.env.now
        self._book_ids(batch)
        self._book_start_s(start_s)
        self._book_end_s(now + self._overhead_s)
        if len(self._booked) >= APPLY_AT:
            self._log.apply_book(self._book)
        size = len(batch)
        if self._live is not None:
            self._live.busy.add(now, -1)
            self._live.concurrency.add(now, -size)
        self.in_service -= size
        self._loads[self.slot] -= size
        self.idle_executors += 1
        self._on_finished(size)
        if self.queue:
            if self._timeout_s is not None:
                self.expire(now)
            self._dispatch(now)
        elif self.draining:
            self._check_drained()

    def book_in_service(self) -> None:
        """At the end of the run, book the start of batches still being served (they stay in flight)."""
        for event in self._running:
            batch, start_s = cast(tuple[list[int], float], event.value)
            self._book_ids(batch)
            self._book_start_s(start_s)
            self._book_end_s(float("nan"))
        self._running.clear()
