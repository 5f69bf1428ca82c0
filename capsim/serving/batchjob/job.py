"""The SimPy model of one batch job: workers pull partitions from a shared queue and score them in
batches, reading input (optionally prefetched), committing progress at checkpoints, and losing the
uncommitted part when a spot worker is reclaimed. One process per worker; the exact rules are in
docs/model.md ("Batch jobs")."""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from capsim.rng import RandomStreams
from capsim.servicetime.base import ServiceTimeModel
from capsim.serving.batchjob.checks import read_s
from capsim.serving.batchjob.schema import BatchJobServing


@dataclass
class Partition:
    """A unit of work: `size` items, of which the first `committed` are done for good."""

    index: int
    size: int
    committed: int = 0


@dataclass
class Worker:
    """One worker (one replica of the hardware): billed from launch until it leaves."""

    wid: int
    on_spot: bool
    launched_s: float
    left_s: float | None = None
    noticed: bool = False
    partition: Partition | None = None
    uncommitted: int = 0  # items scored since the partition's last commit
    uncommitted_compute_s: float = 0.0  # compute time spent on them
    phase: str | None = None  # what the worker is waiting for: startup, read_stall, compute, checkpoint
    phase_since_s: float = 0.0
    process: simpy.Process | None = None


@dataclass
class JobRecord:
    """Everything the summary is computed from (times in seconds)."""

    total_items: int
    commits: list[tuple[float, int]] = field(default_factory=list)  # (time, items committed)
    # Per batch, in compact arrays (a job can have millions of batches): when its compute started
    # and ended (cut short by a reclaim or the horizon), and its drawn service time.
    compute_start_s: array[float] = field(default_factory=lambda: array("d"))
    compute_end_s: array[float] = field(default_factory=lambda: array("d"))
    batch_service_s: array[float] = field(default_factory=lambda: array("d"))
    workers: list[Worker] = field(default_factory=list)
    phase_s: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("startup", "read_stall", "compute", "checkpoint"), 0.0)
    )  # worker-seconds spent in each phase
    lost_compute_s: float = 0.0
    items_done: int = 0  # items committed
    items_scored: int = 0  # items whose batch finished, including work later lost
    items_lost: int = 0
    interruptions: int = 0
    makespan_s: float | None = None

    def busy_changes(self) -> tuple[np.ndarray, np.ndarray]:
        """Workers computing as a step series: (change times, ±1)."""
        starts, ends = np.frombuffer(self.compute_start_s), np.frombuffer(self.compute_end_s)
        return np.concatenate([starts, ends]), np.concatenate([np.ones(starts.size), -np.ones(ends.size)])


class BatchJob:
    """One replication of a batch job on `env`; `run(horizon_s)` simulates it to the end or the horizon."""

    def __init__(
        self, env: simpy.Environment, serving: BatchJobServing, service: ServiceTimeModel, streams: RandomStreams
    ) -> None:
        self.env = env
        self.serving = serving
        self.service = service
        self.streams = streams
        sizes = serving.dataset.sizes(serving.workers)
        self.partitions = [Partition(i, n) for i, n in enumerate(sizes)]
        self.queue: deque[Partition] = deque(self.partitions)
        self.record = JobRecord(total_items=sum(sizes))
        self.done = env.event()
        self._startup_rng = streams.stream("batch/startup")
        self._spot_rng = streams.stream("batch/spot")
        self._changed = env.event()

    # -- launching and leaving ----------------------------------------------------------------

    def start(self) -> None:
        """Launch the initial workers after the job's own start-up."""
        self.env.process(self._launch_initial())

    def _launch_initial(self) -> Generator[simpy.Event, Any, None]:
        if self.serving.job_startup_s > 0:
            yield self.env.timeout(self.serving.job_startup_s)
        spot = self.serving.spot_workers(self.serving.workers)
        for i in range(self.serving.workers):
            self._launch(on_spot=i < spot)

    def _launch(self, on_spot: bool) -> None:
        worker = Worker(wid=len(self.record.workers), on_spot=on_spot, launched_s=self.env.now)
        self.record.workers.append(worker)
        worker.process = self.env.process(self._work(worker))
        spot = self.serving.spot
        if on_spot and spot is not None and spot.rate_per_s > 0:
            notice_in_s = float(self._spot_rng.exponential(1.0 / spot.rate_per_s))
            self.env.process(self._spot_clock(worker, notice_in_s, spot.notice_s))

    def _leave(self, worker: Worker) -> None:
        worker.left_s = self.env.now
        if worker.noticed:
            self._signal()

    def _wait(self, worker: Worker, phase: str, duration_s: float) -> Generator[simpy.Event, Any, None]:
        """Spend `duration_s` in `phase`, booking the time even when a reclaim cuts it short."""
        worker.phase, worker.phase_since_s = phase, self.env.now
        try:
            yield self.env.timeout(duration_s)
        finally:
            self._end_phase(worker)

    def _end_phase(self, worker: Worker) -> None:
        if worker.phase is not None:
            spent_s = self.env.now - worker.phase_since_s
            self.record.phase_s[worker.phase] += spent_s
            if worker.phase == "compute":
                worker.uncommitted_compute_s += spent_s
            worker.phase = None

    def _spot_clock(self, worker: Worker, notice_in_s: float, notice_s: float) -> Generator[simpy.Event, Any, None]:
        """The provider's interruption of a spot worker: a notice, then reclaim `notice_s` later."""
        yield self.env.timeout(notice_in_s)
        if worker.left_s is not None or self.done.triggered:
            return
        worker.noticed = True
        self.record.interruptions += 1
        self._launch(on_spot=True)  # the replacement keeps the spot share and takes the lost work
        if worker.partition is None:
            assert worker.process is not None
            worker.process.interrupt("reclaimed")  # starting up or idle: nothing to finish, it leaves now
            return
        yield self.env.timeout(notice_s)
        if worker.left_s is None and not self.done.triggered:
            assert worker.process is not None
            worker.process.interrupt("reclaimed")

    # -- the worker ---------------------------------------------------------------------------

    def _work(self, worker: Worker) -> Generator[simpy.Event, Any, None]:
        try:
            startup = self.serving.worker_startup
            startup_s = sum(d.sample_s(self._startup_rng) for d in (startup.provisioning_s, startup.image_pull_s,
                                                                   startup.model_load_s))  # fmt: skip
            yield from self._wait(worker, "startup", startup_s)
            sampler = self.service.sampler(self.streams.stream(f"batch/service/worker-{worker.wid}"))
            while not worker.noticed and not self.done.triggered:
                if self.queue:
                    partition = self.queue.popleft()
                    worker.partition = partition
                    yield from self._score(worker, partition, sampler)
                    worker.partition = None
                elif self._may_return():
                    yield self._changed  # a reclaimed worker's partition may come back: wait (billed, idle)
                else:
                    break  # nothing left for it: released
        except simpy.Interrupt:
            self._reclaimed(worker)
        self._leave(worker)

    def _may_return(self) -> bool:
        """Whether a partition may still come back to the queue: a noticed worker holds one."""
        return any(w.noticed and w.partition is not None and w.left_s is None for w in self.record.workers)

    def _signal(self) -> None:
        """Wake idle workers waiting for a partition to come back (they re-check the queue)."""
        changed, self._changed = self._changed, self.env.event()
        changed.succeed()

    def _score(self, worker: Worker, partition: Partition, sampler: Any) -> Generator[simpy.Event, Any, None]:
        """Score what is left of `partition` in batches, committing at checkpoints and at its end."""
        env, serving, record = self.env, self.serving, self.record
        checkpoint = serving.checkpoint
        write_s = checkpoint.write_s if checkpoint is not None else 0.0
        offset = partition.committed
        sizes = []
        while offset < partition.size:
            n = min(serving.batch_size, partition.size - offset)
            sizes.append(n)
            offset += n
        worker.uncommitted = 0
        ready_s = env.now + read_s(serving, sizes[0])  # the first read of a partition is never hidden
        since_commit = 0
        for k, n in enumerate(sizes):
            if ready_s > env.now:
                yield from self._wait(worker, "read_stall", ready_s - env.now)
            last = k == len(sizes) - 1
            if serving.prefetch and not last:
                ready_s = env.now + read_s(serving, sizes[k + 1])  # read k+1 while k computes
            service_s = sampler(n)
            record.compute_start_s.append(env.now)
            try:
                yield from self._wait(worker, "compute", service_s)
            finally:
                record.compute_end_s.append(env.now)
            record.batch_service_s.append(service_s)
            record.items_scored += n
            worker.uncommitted += n
            since_commit += 1
            if last or (checkpoint is not None and since_commit == checkpoint.every_batches):
                if write_s > 0:
                    yield from self._wait(worker, "checkpoint", write_s)
                self._commit(worker, partition)
                since_commit = 0
            if not serving.prefetch and not last:
                ready_s = env.now + read_s(serving, sizes[k + 1])  # serial: read after compute and commit

    def _commit(self, worker: Worker, partition: Partition) -> None:
        partition.committed += worker.uncommitted
        self.record.commits.append((self.env.now, worker.uncommitted))
        self.record.items_done += worker.uncommitted
        worker.uncommitted = 0
        worker.uncommitted_compute_s = 0.0
        if partition.committed == partition.size and self.record.items_done == self.record.total_items:
            self.record.makespan_s = self.env.now
            self.done.succeed()

    def _reclaimed(self, worker: Worker) -> None:
        """A reclaimed worker's uncommitted items are lost; its partition goes back to the head of
        the queue, resumed from its last commit by the next worker free."""
        partition = worker.partition
        if partition is None:
            return
        # Scored-but-uncommitted batches and the batch in progress (booked by _wait) are lost.
        self.record.lost_compute_s += worker.uncommitted_compute_s
        self.record.items_lost += worker.uncommitted
        worker.uncommitted = 0
        worker.uncommitted_compute_s = 0.0
        worker.partition = None
        self.queue.appendleft(partition)
        self._signal()

    # -- the end ------------------------------------------------------------------------------

    def close(self, end_s: float) -> None:
        """Stop billing every worker still present at `end_s` (the job's end or the horizon)."""
        for worker in self.record.workers:
            if worker.left_s is None:
                if worker.phase == "compute":
                    self.record.compute_end_s.append(end_s)
                self._end_phase(worker)  # the phase in progress counts up to the end
                worker.left_s = end_s

    def remaining_items(self) -> int:
        """Items not committed, over every partition (queued, in progress or done)."""
        return sum(p.size - p.committed for p in self.partitions)


def as_changes(changes: list[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(time, delta) pairs as the two arrays `step_at` and `step_means` take."""
    if not changes:
        return np.zeros(0), np.zeros(0)
    arr = np.asarray(changes, dtype=float)
    return arr[:, 0], arr[:, 1]


def _levels(changes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    times, deltas = changes
    order = np.argsort(times, kind="stable")
    return times[order], np.cumsum(deltas[order])


def step_at(changes: tuple[np.ndarray, np.ndarray], times_s: np.ndarray) -> np.ndarray:
    """The value at each of `times_s` of a step series starting at 0, given as (change times,
    deltas); a change at t counts from t on."""
    if changes[0].size == 0:
        return np.zeros(times_s.size)
    t, level = _levels(changes)
    idx = np.searchsorted(t, times_s, side="right")
    return np.where(idx > 0, level[np.maximum(idx - 1, 0)], 0.0)


def step_means(changes: tuple[np.ndarray, np.ndarray], times_s: np.ndarray) -> np.ndarray:
    """The time average of a step series (as in `step_at`) over each interval (times[i-1], times[i]];
    the first entry is the value at times[0]. Averages, unlike samples, do not alias the short gaps
    between batches."""
    if changes[0].size == 0:
        return np.zeros(times_s.size)
    t, level = _levels(changes)
    # Area from 0 to each change time, then to each grid time.
    area_at_change = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(t))])
    idx = np.searchsorted(t, times_s, side="right")
    last = np.maximum(idx - 1, 0)
    area = np.where(idx > 0, area_at_change[last] + level[last] * (times_s - t[last]), 0.0)
    widths = np.diff(times_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(widths > 0, np.diff(area) / np.where(widths > 0, widths, 1.0), 0.0)
    return np.concatenate([step_at(changes, times_s[:1]), means])
