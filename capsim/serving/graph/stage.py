"""One stage of a graph of models: a complete real-time fleet — the compiled data plane
(capsim/serving/dataplane) under its own SimPy control plane, with its autoscaler — fed by the
graph instead of by an arrival process, and advanced in lock-step (capsim/serving/graph/run.py).

The fleet is `CompiledFleet` unchanged but for where its arrivals come from: the graph feeds it
chunks of arrival times as they are routed. When its kernel has used up every chunk fed so far
and the graph has not closed the stage's input, the fleet *waits for arrivals*: its run of arrivals
ends without the stream ending, and the kernel goes on with its other events (batches, timers). The
graph only ever feeds arrivals at or after the time the stage has been advanced to, so feeding one
later starts a new run of arrivals exactly as if it had been there all along.

Every finished request (completed, rejected, timed out) is *harvested* once: folded into the
stage's own statistics and handed to the graph with the graph request it belongs to; its row is
then marked FOLDED, so the request log keeps only the rows still in flight (bounded memory).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import simpy

from capsim.autoscale.controller import AutoscaleController
from capsim.metrics.intervals import LevelAreas
from capsim.metrics.request_log import FOLDED, IN_FLIGHT, Columns, RequestLog, without_folded
from capsim.metrics.tally import RequestTally
from capsim.rng import RandomStreams
from capsim.serving.dataplane import layout
from capsim.serving.dataplane.fleet import CompiledFleet
from capsim.serving.dataplane.fold import allocate

if TYPE_CHECKING:
    from capsim.engine import ReplicationResult
    from capsim.scenario import Scenario


@dataclass
class Visits:
    """Requests of the graph at a stage, one entry per request: the graph request's id, when it
    arrived at the graph, its version (index of its entry stage) and, once known, when its first
    stage started serving it and in what batch size (the graph's queue wait and batch size), and
    `time_s`: when it arrives at the stage (fed) or leaves it (harvested)."""

    gid: np.ndarray
    arrival_s: np.ndarray
    version: np.ndarray
    start_s: np.ndarray
    batch_size: np.ndarray
    time_s: np.ndarray

    @staticmethod
    def empty() -> Visits:
        """No requests."""
        f, i = np.zeros(0), np.zeros(0, dtype=np.int64)
        return Visits(i, f, i, f, i, f)

    def take(self, keep: np.ndarray | slice) -> Visits:
        """The entries selected by a mask, an index array or a slice."""
        return Visits(*(getattr(self, name)[keep] for name in _FIELDS))

    def at(self, time_s: np.ndarray) -> Visits:
        """The same requests at other times."""
        return Visits(self.gid, self.arrival_s, self.version, self.start_s, self.batch_size, time_s)

    @staticmethod
    def concat(parts: list[Visits]) -> Visits:
        """The entries of `parts`, one after the other."""
        if len(parts) == 1:
            return parts[0]
        return Visits(*(np.concatenate([getattr(v, name) for v in parts]) for name in _FIELDS))

    def __len__(self) -> int:
        return int(self.gid.size)


_FIELDS = ("gid", "arrival_s", "version", "start_s", "batch_size", "time_s")


@dataclass
class Harvest:
    """Requests a stage has finished: who they are, and at the stage: outcome
    (capsim.metrics.request_log), batch start (NaN if never served) and batch size."""

    visits: Visits
    outcome: np.ndarray
    start_s: np.ndarray
    batch_size: np.ndarray


class _FedChunks:
    """The fleet's arrival chunks: what the graph has fed and the kernel has not yet taken. Taking a
    chunk moves its visits to `taken` (their stage ids follow on from the previous chunk's)."""

    def __init__(self) -> None:
        self.waiting: deque[Visits] = deque()
        self.taken: deque[Visits] = deque()

    def __iter__(self) -> _FedChunks:
        return self

    def __next__(self) -> np.ndarray:
        if not self.waiting:
            raise StopIteration
        visits = self.waiting.popleft()
        self.taken.append(visits)
        return visits.time_s


class StageFleet(CompiledFleet):
    """CompiledFleet fed by the graph: arrivals come as they are routed (`feed`) until `close`."""

    def start_fed(self) -> _FedChunks:
        """Begin with no arrivals yet; returns the queue `feed` fills."""
        self.fed = _FedChunks()
        self.closed = False
        self.waiting_for_arrivals = False
        self.start(self.fed)
        return self.fed

    def _load_arrivals(self) -> None:
        super()._load_arrivals()
        if self.arrivals_done and not self.closed:
            # Every chunk fed so far is used up: the run of arrivals ends, the stream does not.
            p = self.plane
            p.ints[layout.I_ARRIVALS_DONE] = 0
            p.ints[layout.I_IN_LOOP] = 0
            self.arrivals_done = False
            self.waiting_for_arrivals = True

    def feed(self, visits: Visits) -> None:
        """Arrivals at `visits.time_s` (sorted, none earlier than the stage's clock)."""
        self.fed.waiting.append(visits)
        if self.waiting_for_arrivals:
            self.waiting_for_arrivals = False
            p = self.plane
            p.ints[layout.I_IN_LOOP] = 1  # a new run of arrivals, as at the start of the run
            p.ints[layout.I_DUE] = 0
            self._arm_pump()

    def close(self) -> None:
        """No more arrivals will come: once it has finished its work the fleet has drained."""
        self.closed = True
        if self.waiting_for_arrivals:
            self.waiting_for_arrivals = False
            self.plane.ints[layout.I_ARRIVALS_DONE] = 1
            self.arrivals_done = True
            self._finished(0)


FOLD_ROWS = 1 << 16
"""Harvested rows folded into statistics at once (a fold costs about as much for a few rows as for many)."""


class Stage:
    """One stage's world: its SimPy environment, fleet, autoscaler, request log and statistics."""

    def __init__(self, scenario: Scenario, streams: RandomStreams, ticks: np.ndarray, horizon_s: float,
                 exact: bool) -> None:  # fmt: skip
        from capsim.scenario import RealtimeServing

        serving = scenario.serving
        assert isinstance(serving, RealtimeServing)
        self.scenario = scenario
        self.ticks = ticks
        self.overhead_s = serving.overhead_ms / 1000.0
        self.tally = RequestTally(scenario.warmup_s, None, exact=exact)
        self.levels = LevelAreas(ticks, self.overhead_s)
        self.env = simpy.Environment()
        self.log = RequestLog(flush=self._take_prefix)
        no_fold = allocate(ticks, scenario.warmup_s, None, serving.batching.max_batch_size, horizon_s, on=False)
        self.fleet = StageFleet(self.env, serving, scenario.service, streams, self.log, no_fold)
        self.fed = self.fleet.start_fed()
        if serving.autoscaling is not None:
            AutoscaleController(self.env, self.fleet, serving.autoscaling, serving.schedule, serving.clock_start_h)
        self._first_id = 0  # stage id of the first visit in `fed.taken`
        self._scan_from_id = 0  # every row before this id has been harvested
        self._out: list[Harvest] = []
        self._unfolded: list[Columns] = []  # harvested rows not yet in the statistics
        self._unfolded_rows = 0

    def feed(self, visits: Visits) -> None:
        """Requests arriving at this stage (sorted by `time_s`, none before the stage's clock)."""
        if len(visits):
            self.fleet.feed(visits)

    def advance_to(self, t_s: float) -> None:
        """Run the stage's control and data planes over every event before `t_s`."""
        if t_s > self.env.now:
            self.env.run(until=t_s)

    def close(self) -> None:
        """The graph will feed no more arrivals."""
        self.fleet.close()

    @property
    def drained(self) -> bool:
        """Its input is closed and every request it received has finished."""
        return bool(self.fleet.drained.triggered)

    def harvest(self) -> Harvest:
        """The requests finished since the last harvest (`visits.time_s`: when the stage answered,
        rejected or timed them out)."""
        log = self.log
        view = log.view()
        lo = self._scan_from_id - log.base
        outcome = view["outcome"][lo:]
        finished = np.flatnonzero((outcome != IN_FLIGHT) & (outcome != FOLDED)) + lo
        if finished.size:
            self._take({name: col[finished] for name, col in view.items()}, finished + log.base)
            view["outcome"][finished] = FOLDED
        still = np.flatnonzero(view["outcome"][lo:] == IN_FLIGHT)
        self._scan_from_id = log.base + (lo + int(still[0]) if still.size else view["outcome"].size)
        return self._collect()

    def _take_prefix(self, cols: Columns) -> None:
        # The log hands over its finished prefix when it needs room: harvest what is not yet harvested.
        ids = self.log.base + np.arange(cols["outcome"].size)
        keep = np.flatnonzero(cols["outcome"] != FOLDED)
        if keep.size:
            self._take({name: col[keep] for name, col in cols.items()}, ids[keep])

    def _take(self, cols: Columns, ids: np.ndarray) -> None:
        """Fold finished rows into the stage's statistics and queue them for the graph."""
        self._unfolded.append(cols)
        self._unfolded_rows += cols["outcome"].size
        if self._unfolded_rows >= FOLD_ROWS:
            self._fold()
        self._out.append(Harvest(self._visits_of(ids).at(cols["end_s"]), cols["outcome"].copy(),
                                 cols["start_s"].copy(), cols["batch_size"].astype(np.int64)))  # fmt: skip

    def _fold(self) -> None:
        """Fold the harvested rows into the stage's statistics (in blocks: each fold costs about as
        much for a few rows as for many)."""
        if self._unfolded:
            cols = {name: np.concatenate([c[name] for c in self._unfolded]) for name in self._unfolded[0]}
            self.levels.add(cols)
            self.tally.add(cols, self.overhead_s)
        self._unfolded, self._unfolded_rows = [], 0

    def _visits_of(self, ids: np.ndarray) -> Visits:
        """The graph's requests behind stage ids (the chunks taken, in id order)."""
        taken = self.fed.taken
        if len(taken) > 1:  # joined into one window, so that a lookup is one array
            joined = Visits.concat(list(taken))
            taken.clear()
            taken.append(joined)
        window = taken[0]
        # Ids below both the scan point and this lookup are harvested: cut them off (bounded memory).
        cut = min(self._scan_from_id, int(ids.min())) - self._first_id
        if cut > 0:
            window = window.take(slice(cut, None))
            taken[0] = window
            self._first_id += cut
        return window.take(ids - self._first_id)

    def _collect(self) -> Harvest:
        out, self._out = self._out, []
        if not out:
            return Harvest(Visits.empty(), np.zeros(0, dtype=np.int8), np.zeros(0), np.zeros(0, dtype=np.int64))
        if len(out) == 1:
            return out[0]
        return Harvest(
            Visits.concat([h.visits for h in out]),
            *(np.concatenate([getattr(h, c) for h in out]) for c in ("outcome", "start_s", "batch_size")),
        )

    def finish(self, seed: int, replication: int) -> ReplicationResult:
        """End of run: time out what is due, book batches still in service, fold the requests still
        in flight, and summarize the stage as a real-time run of its own."""
        from capsim.engine import realtime_result

        env, fleet = self.env, self.fleet
        fleet.expire_buffer(env.now)
        for replica in fleet.all_replicas:
            replica.expire(env.now)
            replica.book_in_service()
        self.harvest()
        self._fold()
        view = without_folded(self.log.view())
        self.levels.add(view)
        self.tally.add(view, self.overhead_s)
        return realtime_result(self.scenario, seed, replication, "compiled", self.tally, self.levels, fleet,
                               self.ticks, None)  # fmt: skip
