"""The async queue's control plane: the feeder that appends submissions in chunks, the worker pool
(cold starts, scale-down: a free worker leaves at once, a busy one after its batch), the reads KEDA
and the depth sampler take, and the pump that advances the compiled data plane
(capsim/serving/asyncqueue/kernel.py: the queue, the dispatcher, service, store writes, polling
clients) up to each control event. docs/model.md ("Async queue") states the rules.

Where the two planes meet, as in streaming (capsim/serving/streaming/group.py): SimPy holds every
control event (arrival chunks, cold starts, KEDA, the samplers, the progress clock); the pump, a
SimPy process, runs the kernel up to the next of them (`env.peek()`) after the control events due
now, so a worker that becomes ready or a chunk appended at an instant is seen by the dispatcher at
that instant, after the reads taken there. Python tells the kernel of a change by writing the
worker's slot or waking the dispatcher (`kernel.wake_dispatcher`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from capsim.metrics.request_log import COLUMNS, COMPLETED, Columns, RequestLog
from capsim.metrics.tally import HistogramValues, ValueDistribution
from capsim.serving.asyncqueue import kernel
from capsim.serving.asyncqueue.fold import HISTOGRAMS, R_POLL_DELAY, R_RESULT
from capsim.serving.asyncqueue.kernel import QueueState
from capsim.serving.asyncqueue.spec import AsyncServing
from capsim.serving.dataplane import layout
from capsim.serving.dataplane.plane import DRAW_CHUNK
from capsim.serving.pool import ColdStarter, PoolLevels
from capsim.serving.pull_run import ItemFold, close_log, drain_limit_s
from capsim.serving.streaming.fold import add_interval, histogram_row
from capsim.serving.streaming.fold import allocate as allocate_fold
from capsim.serving.streaming.fold import into as fold_into
from capsim.serving.streaming.slots import refill_draws, with_more_slots

if TYPE_CHECKING:
    from capsim.scenario.schema import Scenario


class Worker:
    """One worker pod: its service-time stream and whether it is leaving; its state is a slot of the kernel."""

    __slots__ = ("_queue", "index", "leaving", "rng", "slot")

    def __init__(self, queue: AsyncQueue, index: int, rng: np.random.Generator) -> None:
        self._queue = queue
        self.index = index
        self.rng = rng  # one draw per batch, in 4,096-draw chunks
        self.leaving = False
        self.slot = -1

    @property
    def busy(self) -> bool:
        """Whether it is processing a batch (service or store write)."""
        return bool(self._queue.state.phase[self.slot] == kernel.BUSY)

    @property
    def batch_ids(self) -> np.ndarray:
        """The job ids of its batch."""
        st = self._queue.state
        first = int(st.b_first[self.slot])
        return np.arange(first, first + int(st.b_size[self.slot]), dtype=np.int64)

    @property
    def batch_start_s(self) -> float:
        """When that batch started."""
        return float(self._queue.state.b_start[self.slot])


class AsyncQueue:
    """The queue's control plane for one replication: the pool, the feeder, the reads and the pump.

    With `keep_requests` each job's row goes to `log`; otherwise finished jobs are folded in the
    loop and only the jobs still queued or in a batch are kept."""

    def __init__(
        self,
        env: simpy.Environment,
        scenario: Scenario,
        make_rng: Callable[[int], np.random.Generator],
        starter_rng: np.random.Generator,
        log: RequestLog,
        fold: ItemFold,
        keep_requests: bool,
    ) -> None:
        serving = scenario.serving
        assert isinstance(serving, AsyncServing)
        self.env = env
        self.serving = serving
        self.make_rng = make_rng
        self.log = log
        self.fold = fold
        self.keep_requests = keep_requests
        slo_s = scenario.slo.latency_ms / 1000.0 if scenario.slo else None
        horizon_s = drain_limit_s(scenario) + serving.poll_interval_ms / 1000.0 + 1.0  # bounds every latency
        self.loop_fold = allocate_fold(fold, scenario.warmup_s, slo_s, serving.max_batch_size, horizon_s,
                                       not keep_requests, histograms=HISTOGRAMS)  # fmt: skip
        self.state, self._draw = _allocate(scenario, fold.ticks, slots=max(serving.workers, 4))
        self._ready_s = np.zeros(log.capacity if keep_requests else 0)  # rows' result-stored times
        self.levels = PoolLevels(serving.workers, serving.cold_start.warm_pool, fold.ticks, self.state.busy_area,
                                 self.state.in_service_area)  # fmt: skip
        self.starter = ColdStarter(env, serving.cold_start, starter_rng, self.levels)
        self.workers: list[Worker] = []
        self.next_index = 0
        self.desired = serving.workers
        self.drained = env.event()
        self._feeding = True
        # KEDA's concurrency metric: the integral of submitted jobs, summed up to _area_upto so far
        self._track_in_flight = serving.autoscaling is not None and serving.autoscaling.metric == "concurrency"
        self._area_upto = 0
        self._arrived_area = 0.0
        self._area_at_s = 0.0
        for _ in range(serving.workers):
            self._add_worker(initial=True)
        env.process(self._pump())

    # -- reads ----------------------------------------------------------------------------------------

    @property
    def appended(self) -> int:
        """Jobs appended so far (arrived, or due within the current chunk)."""
        return int(self.state.ints[kernel.I_END])

    @property
    def polls(self) -> int:
        """Client polls of jobs submitted after warm-up, so far."""
        return int(self.state.ints[kernel.I_POLLS])

    def _arrived_by(self, first_id: int, now: float) -> int:
        st = self.state
        return int(kernel.arrived_by(st.times, int(st.ints[kernel.I_ORIGIN]), first_id, self.appended, now))

    def waiting(self, now: float) -> int:
        """Jobs accepted and not yet taken by a worker (the queue depth)."""
        head = int(self.state.ints[kernel.I_HEAD])
        return self._arrived_by(head, now) - head

    def in_flight_area(self, now: float) -> float:
        """The time integral up to `now` (called with non-decreasing times) of jobs accepted and
        without a stored result: the integral of submissions, minus that of stored results."""
        st = self.state
        origin = int(st.ints[kernel.I_ORIGIN])
        self._arrived_area += self._area_upto * (now - self._area_at_s)  # ids 0.._area_upto-1 arrived
        upto = self._arrived_by(self._area_upto, now)
        self._arrived_area += float(np.sum(now - st.times[self._area_upto - origin : upto - origin]))
        self._area_upto, self._area_at_s = upto, now
        floats = st.floats
        done = floats[kernel.F_DONE_AREA] + floats[kernel.F_DONE_VALUE] * max(now - floats[kernel.F_DONE_LAST_S], 0.0)
        return self._arrived_area - float(done)

    # -- the pool --------------------------------------------------------------------------------------

    def _add_worker(self, initial: bool = False) -> None:
        worker = Worker(self, self.next_index, self.make_rng(self.next_index))
        self.next_index += 1
        self.workers.append(worker)
        self._take_slot(worker)
        if not initial:
            now = self.env.now
            self.levels.ready.set(now, len(self.workers))
            kernel.wake_dispatcher(self.state, now)

    def _take_slot(self, worker: Worker) -> None:
        st = self.state
        free = np.flatnonzero(st.phase == kernel.FREE)
        if free.size == 0:
            self.state = st = with_more_slots(st, _PER_SLOT)
            free = np.flatnonzero(st.phase == kernel.FREE)
        s = int(free[0])
        worker.slot = s
        st.phase[s] = kernel.IDLE  # it joins the free queue's end
        st.free_seq[s] = st.ints[kernel.I_SEQ]
        st.ints[kernel.I_SEQ] += 1
        st.member_index[s] = worker.index
        st.leaving[s] = 0
        st.draw_pos[s] = st.draw_end[s] = 0

    def scale_to(self, desired: int) -> None:
        """Start or stop workers until `desired` are running or starting."""
        now = self.env.now
        st = self.state
        self.desired = desired
        self.levels.desired.set(now, desired)
        current = sum(not w.leaving for w in self.workers) + len(self.starter.pending)
        for _ in range(desired - current):
            self.starter.start(self._add_worker)
        for _ in range(current - desired):
            if self.starter.cancel_one():
                continue
            # The most recently freed worker leaves at once; if none is free, the newest finishes
            # its batch and leaves.
            idle = [w for w in self.workers if st.phase[w.slot] == kernel.IDLE]
            if idle:
                self._remove(max(idle, key=lambda w: int(st.free_seq[w.slot])), now)
            else:
                worker = max((w for w in self.workers if not w.leaving), key=lambda w: w.index)
                worker.leaving = True
                st.leaving[worker.slot] = 1

    def _remove(self, worker: Worker, at_s: float) -> None:
        self.workers.remove(worker)
        self.state.phase[worker.slot] = kernel.FREE
        worker.slot = -1
        self.levels.ready.set(at_s, len(self.workers))
        self.levels.billed.add(at_s, -1)

    def busy_workers(self) -> list[Worker]:
        """Workers with a batch in progress."""
        return [w for w in self.workers if w.busy]

    # -- submissions -----------------------------------------------------------------------------------

    def feed(self, chunks: Iterator[np.ndarray]) -> Generator[simpy.Event, Any, None]:
        """Append each chunk of submissions when the clock reaches its first one."""
        log = self.log
        for times in chunks:
            if times[0] > self.env.now:
                yield self.env.timeout(float(times[0]) - self.env.now)
            self._make_room(times.size)
            if self.keep_requests:
                log.append_arrivals(times, keep_recent=False)
                if self._ready_s.size < log.capacity:
                    grown = np.zeros(log.capacity)
                    grown[: self._ready_s.size] = self._ready_s
                    self._ready_s = grown
            kernel.enqueue(self.state, times, self.env.now)
        self._feeding = False
        self.state.ints[kernel.I_TARGET] = self.appended
        self._check_drained()

    def _make_room(self, needed: int) -> None:
        """Room for `needed` more jobs in the kernel's `times`: the rows of jobs no longer read (taken
        and finished, and summed into the concurrency integral) are dropped, and the array doubled
        while the rest would fill more than half of it."""
        st = self.state
        origin, end = int(st.ints[kernel.I_ORIGIN]), self.appended
        if end - origin + needed <= st.times.size:
            return
        busy = st.phase == kernel.BUSY
        low = min([int(st.ints[kernel.I_HEAD]), *st.b_first[busy].tolist()])
        if self._track_in_flight:
            low = min(low, self._area_upto)
        keep = end - low
        capacity = st.times.size
        while keep + needed > capacity // 2:
            capacity *= 2
        times = st.times if capacity == st.times.size else np.zeros(capacity)
        times[:keep] = st.times[low - origin : end - origin]
        st.ints[kernel.I_ORIGIN] = low
        if times is not st.times:
            self.state = st._replace(times=times)

    # -- the pump: the data plane up to each control event ---------------------------------------------

    def _pump(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        log = self.log
        while True:
            if env.peek() <= env.now:
                yield env.timeout(0)  # control events due now go first (they may change the pool)
                continue
            status = kernel.advance(self.state, self.loop_fold, env.peek(), log.base, log.start_s, log.end_s,
                                    log.batch_size, log.replica, log.outcome, self._ready_s)  # fmt: skip
            st = self.state
            if status == kernel.NEED_DRAWS:
                self._refill(int(st.ints[kernel.I_SLOT]))
                continue
            if status == kernel.RAN_TO_STOP:
                delay_s = env.peek() - env.now
                if delay_s == math.inf:
                    return  # nothing left to happen
                yield env.timeout(delay_s)  # the kernel's next event, at or after it, is handled then
                continue
            at_s = float(st.floats[kernel.F_AT])
            if status == kernel.LEFT:
                slot = int(st.ints[kernel.I_SLOT])
                self._remove(next(w for w in self.workers if w.slot == slot), at_s)
            if self._all_finished():
                yield env.timeout(at_s - env.now)  # the last result is stored then
                self._check_drained()

    def _refill(self, slot: int) -> None:
        assert self._draw is not None
        worker = next(m for m in self.workers if m.slot == slot)
        refill_draws(self.state, slot, worker.rng, self._draw)

    def _all_finished(self) -> bool:
        return not self._feeding and int(self.state.ints[kernel.I_FINISHED]) == self.appended

    def _check_drained(self) -> None:
        if self._all_finished() and not self.drained.triggered:
            self.drained.succeed()

    # -- the end of the run ------------------------------------------------------------------------------

    def close(self, result_ms: ValueDistribution, poll_delay_ms: ValueDistribution, warmup_s: float) -> None:
        """Fold every job into the statistics: the batches still in progress count as busy from
        their start on and their jobs as in flight; `result_ms` and `poll_delay_ms` get the jobs
        submitted after warm-up whose results were stored."""
        st = self.state
        for worker in self.busy_workers():
            s = worker.slot
            add_interval(st.busy_area, st.ticks, st.b_start[s], math.inf, 1.0)
            add_interval(st.in_service_area, st.ticks, st.b_start[s], math.inf, float(st.b_size[s]))
        if self.keep_requests:
            close_log(self.log, self.fold, self.busy_workers(), keep_requests=True)
            rows = self.log.view()
            submit_s = rows["arrival_s"]
            ready_s = self._ready_s[: submit_s.size]
            measured = (submit_s >= warmup_s) & (rows["outcome"] == COMPLETED)
            result_ms.add((ready_s - submit_s)[measured] * 1000.0)
            poll_delay_ms.add((rows["end_s"] - ready_s)[measured] * 1000.0)
            return
        for block in self._unfinished_blocks():
            self.fold(block)
        fold_into(self.loop_fold, self.fold)
        for row, dist in ((R_RESULT, result_ms), (R_POLL_DELAY, poll_delay_ms)):
            assert isinstance(dist, HistogramValues)
            dist.histogram.merge(histogram_row(self.loop_fold, row))

    def _unfinished_blocks(self, max_rows: int = 1 << 20) -> Iterator[Columns]:
        """The jobs without a stored result at the end, as request-log columns: each batch in
        progress (start, size, worker set), then the queue in blocks of at most `max_rows`."""
        st = self.state
        origin = int(st.ints[kernel.I_ORIGIN])

        def block(first: int, last: int) -> Columns:
            cols: Columns = {name: np.full(last - first, fill, dtype=dtype) for name, (dtype, fill) in COLUMNS.items()}
            cols["arrival_s"] = st.times[first - origin : last - origin]
            return cols  # outcome: in flight (the column's fill)

        for worker in self.busy_workers():
            ids = worker.batch_ids
            cols = block(int(ids[0]), int(ids[-1]) + 1)
            cols["start_s"][:] = worker.batch_start_s
            cols["batch_size"][:] = ids.size
            cols["replica"][:] = worker.index
            yield cols
        head = int(st.ints[kernel.I_HEAD])
        for first in range(head, self.appended, max_rows):
            yield block(first, min(first + max_rows, self.appended))


def _allocate(scenario: Scenario, ticks: np.ndarray, slots: int) -> tuple[QueueState, str | None]:
    """The kernel's state for up to `slots` workers (grown when more are ready), and the numpy
    method that draws the service-time model's variates (None: it takes no draws)."""
    serving = scenario.serving
    assert isinstance(serving, AsyncServing)
    table = scenario.service.batch_time_table(serving.max_batch_size)
    if table is None:
        raise ValueError(f"service kind {getattr(scenario.service, 'kind', '?')} has no compiled form")
    table = table.without_sizes()  # (records / jobs have no sizes: each does one size unit)
    cfg_i = np.zeros(kernel.N_CFG_I, dtype=np.int64)
    cfg_i[kernel.C_BATCH] = serving.max_batch_size
    cfg_i[kernel.C_FORM] = table.form
    cfg_i[kernel.C_DRAWS] = table.draw is not None
    cfg_f = np.zeros(kernel.N_CFG_F)
    cfg_f[kernel.C_WAIT_S] = serving.batch_wait_ms / 1000.0
    cfg_f[kernel.C_WRITE_S] = serving.store_write_ms / 1000.0
    cfg_f[kernel.C_INTERVAL_S] = serving.poll_interval_ms / 1000.0
    cfg_f[layout.C_LOC] = table.loc
    cfg_f[layout.C_SIGMA] = table.sigma
    cfg_f[kernel.C_WARMUP_S] = scenario.warmup_s
    ints = np.zeros(kernel.N_INTS, dtype=np.int64)
    ints[kernel.I_TARGET] = -1
    floats = np.zeros(kernel.N_FLOATS)
    floats[kernel.F_DISPATCH_AT] = math.inf
    i64 = np.int64
    state = QueueState(
        times=np.zeros(1 << 16),
        phase=np.zeros(slots, dtype=i64), member_index=np.zeros(slots, dtype=i64), leaving=np.zeros(slots, dtype=i64),
        free_seq=np.zeros(slots, dtype=i64), b_first=np.zeros(slots, dtype=i64), b_size=np.zeros(slots, dtype=i64),
        b_start=np.zeros(slots), b_seq=np.zeros(slots, dtype=i64), next_s=np.zeros(slots),
        draws=np.zeros((slots, 2 * DRAW_CHUNK)), draw_pos=np.zeros(slots, dtype=i64),
        draw_end=np.zeros(slots, dtype=i64),
        ints=ints, floats=floats, cfg_i=cfg_i, cfg_f=cfg_f,
        scale_s=table.scale_s, levels=table.levels, quantiles_s=table.quantiles_s,
        ticks=ticks, busy_area=np.zeros(ticks.size + 1), in_service_area=np.zeros(ticks.size + 1),
    )  # fmt: skip
    return state, table.draw


_PER_SLOT = ("phase", "member_index", "leaving", "free_seq", "b_first", "b_size", "b_start", "b_seq", "next_s",
             "draws", "draw_pos", "draw_end")  # fmt: skip
