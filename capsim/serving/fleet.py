"""A real-time fleet: the arrival stream, the response cache, the activator, the load balancer and
replicas that come and go.

Arrivals are drawn in numpy chunks and fed by a chain of timer events (one pending at a time);
replicas are event-driven state machines. Nothing is ever created per request but its timer.

Replica lifecycle: starting (node provisioning unless a warm node is free, image pull, model load)
→ ready (in the balancer) → draining (out of the balancer, finishing its queue) → gone. Billing runs
from the start of provisioning to the end of draining; warm-pool nodes are billed all the time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import simpy

from capsim.metrics.live import LiveMetrics
from capsim.metrics.request_log import COMPLETED, REJECTED, TIMED_OUT, RequestLog
from capsim.metrics.steps import StepSeries
from capsim.rng import RandomStreams
from capsim.scenario import RealtimeServing
from capsim.servicetime.base import ServiceTimeModel
from capsim.serving.balancer import make_balancer
from capsim.serving.replica import Replica, ReplicaConfig


class _Starting:
    """A replica on its way to ready; `cancelled` when a scale-down gets to it first."""

    __slots__ = ("cancelled", "on_spot")

    def __init__(self) -> None:
        self.cancelled = False
        self.on_spot = False


class FleetLevels:
    """Replica counts over time, as exact step series."""

    def __init__(self, ready: int, warm_pool: int) -> None:
        self.billed_spot = StepSeries(0)  # the share of `billed` on spot prices
        self.desired = StepSeries(ready)
        self.starting = StepSeries(0)
        self.ready = StepSeries(0)  # the initial replicas are made ready (and counted) one by one
        self.billed = StepSeries(ready + warm_pool)  # nodes paid for: starting, ready, draining, warm pool
        self.serving_executors = StepSeries(0)  # executors of ready + draining replicas


class RealtimeFleet:
    """Replicas behind a load balancer, fed by one arrival stream."""

    def __init__(
        self,
        env: simpy.Environment,
        serving: RealtimeServing,
        service: ServiceTimeModel,
        streams: RandomStreams,
        log: RequestLog,
    ) -> None:
        self.env = env
        self.serving = serving
        self.log = log
        self._service = service
        self._streams = streams
        self.pending = 0  # requests that reached the fleet (activator or a replica) and are not finished
        self.arrived = 0  # requests routed past the cache, cumulative (the rps metric)
        self.arrivals_done = False
        self.drained = env.event()
        self.cold_starts = 0
        self.config = ReplicaConfig(
            instances=serving.instances_per_replica,
            max_batch_size=serving.batching.max_batch_size,
            max_wait_s=serving.batching.max_wait_ms / 1000.0,
            queue_capacity=serving.queue_capacity,
            timeout_s=None if serving.timeout_ms is None else serving.timeout_ms / 1000.0,
            overhead_s=serving.overhead_ms / 1000.0,
            frontend_workers=serving.frontend.workers if serving.frontend is not None else 0,
        )
        self.all_replicas: list[Replica] = []  # every replica ever created; index = id in the request log
        self.ready: list[Replica] = []
        self.loads: list[int] = []  # outstanding requests of each ready replica, for the balancer
        self.draining: set[Replica] = set()
        self.starting: list[_Starting] = []
        self.buffer: deque[int] = deque()  # the activator: requests waiting for a first ready replica
        self.on_buffered: Callable[[float], None] | None = None  # pokes the autoscaler (Knative's activator)
        # Integrated metrics cost a little on every request: kept only when an autoscaler reads them.
        self.live = LiveMetrics() if serving.autoscaling is not None else None
        self.levels = FleetLevels(serving.replicas, serving.cold_start.warm_pool)
        self._warm_nodes = serving.cold_start.warm_pool
        self._coldstart_rng = streams.stream("coldstart")
        self._spot_rng = streams.stream("spot")
        self.spot: set[Replica] = set()
        self._reclaimed_at: dict[Replica, float] = {}  # interrupted spot replicas: end of their notice
        self._spot_starting = 0
        self.spot_interruptions = 0
        for _ in range(serving.replicas):
            on_spot = self._take_spot_slot()
            self._make_ready(self._new_replica(), on_spot)
        self.balancer = make_balancer(serving.load_balancer, streams.stream("balancer"))
        self._cache_rng = streams.stream("cache")

    # -- membership ------------------------------------------------------------------------------

    def _new_replica(self) -> Replica:
        index = len(self.all_replicas)
        sampler = self._service.sampler(self._streams.stream(f"service/replica-{index}"))
        frontend = self.serving.frontend
        frontend_sample_s = (
            frontend.sampler(self._streams.stream(f"frontend/replica-{index}")) if frontend is not None else None
        )
        replica = Replica(
            self.env, index, self.config, sampler, self.log, self._finished, [0], self._drained, self.live,
            frontend_sample_s,
        )
        self.all_replicas.append(replica)
        return replica

    def _rebuild_loads(self) -> None:
        # Replicas write their outstanding count into this list at their slot; rebuilt on every
        # membership change (rare) so that the hot path only does list arithmetic.
        self.loads = [r.queued_or_in_service() for r in self.ready]
        for slot, replica in enumerate(self.ready):
            replica.attach(self.loads, slot)

    def _take_spot_slot(self) -> bool:
        """Whether the next replica goes on spot capacity, keeping the spot share at the target."""
        spot = self.serving.spot
        if spot is None or spot.fraction <= 0:
            return False
        on_spot = len(self.spot) + self._spot_starting
        total = len(self.ready) + len(self.starting) + len(self.draining)
        if on_spot < round(spot.fraction * (total + 1)):
            self._spot_starting += 1
            self.levels.billed_spot.add(self.env.now, 1)
            return True
        return False

    def _make_ready(self, replica: Replica, on_spot: bool = False) -> None:
        if on_spot:
            self._spot_starting -= 1
            self.spot.add(replica)
            assert self.serving.spot is not None
            rate_per_s = self.serving.spot.rate_per_s
            if rate_per_s > 0:  # a rate of 0 prices spot capacity that is never interrupted
                notice_at = self._spot_rng.exponential(1.0 / rate_per_s)
                self.env.timeout(notice_at, replica).callbacks.append(self._on_interruption_notice)
        self.ready.append(replica)
        self._rebuild_loads()
        now = self.env.now
        self.levels.ready.set(now, len(self.ready))
        self.levels.serving_executors.add(now, self.config.instances)
        if self.buffer:
            self._flush_buffer(now)

    @property
    def current(self) -> int:
        """Replicas asked for and not being removed: starting + ready (Kubernetes `spec.replicas`)."""
        return len(self.ready) + len(self.starting)

    def scale_to(self, desired: int) -> None:
        """Start or remove replicas so that starting + ready = `desired`."""
        now = self.env.now
        self.levels.desired.set(now, desired)
        while self.current < desired:
            self._start_replica(now)
        while self.current > desired:
            if self.starting:
                # Pods that are not ready yet go first (as a ReplicaSet deletes unready pods first).
                pending = self.starting.pop()
                pending.cancelled = True
                self.levels.starting.set(now, len(self.starting))
                self.levels.billed.add(now, -1)
                if pending.on_spot:
                    self._spot_starting -= 1
                    self.levels.billed_spot.add(now, -1)
            else:
                self._drain(min(self.ready, key=lambda r: r.queued_or_in_service()))

    def _start_replica(self, now: float) -> None:
        pending = _Starting()
        pending.on_spot = self._take_spot_slot()
        self.starting.append(pending)
        self.cold_starts += 1
        self.levels.starting.set(now, len(self.starting))
        self.levels.billed.add(now, 1)
        cold = self.serving.cold_start
        rng = self._coldstart_rng
        if self._warm_nodes > 0:
            self._warm_nodes -= 1
            provisioning_s = 0.0
            # The pool is refilled by launching a replacement node (billed as part of the pool).
            self.env.timeout(cold.provisioning_s.sample_s(rng)).callbacks.append(self._refill_warm_node)
        else:
            provisioning_s = cold.provisioning_s.sample_s(rng)
        delay_s = provisioning_s + cold.image_pull_s.sample_s(rng) + cold.model_load_s.sample_s(rng)
        self.env.timeout(delay_s, pending).callbacks.append(self._on_started)

    def _refill_warm_node(self, _event: simpy.Event) -> None:
        self._warm_nodes += 1

    def _on_started(self, event: simpy.Event) -> None:
        pending: _Starting = event.value  # type: ignore[assignment]
        if pending.cancelled:
            return
        self.starting.remove(pending)
        self.levels.starting.set(self.env.now, len(self.starting))
        self._make_ready(self._new_replica(), pending.on_spot)

    def _drain(self, replica: Replica) -> None:
        now = self.env.now
        self.ready.remove(replica)
        self._rebuild_loads()
        replica.attach([0], 0)
        self.levels.ready.set(now, len(self.ready))
        self.draining.add(replica)
        replica.start_draining(now)

    def _on_interruption_notice(self, event: simpy.Event) -> None:
        replica: Replica = event.value  # type: ignore[assignment]
        if replica not in self.ready:
            return  # already scaled away
        now = self.env.now
        self.spot_interruptions += 1
        assert self.serving.spot is not None
        # The node runs (and is billed) until the provider reclaims it at the end of the notice.
        self._reclaimed_at[replica] = now + self.serving.spot.notice_s
        self._drain(replica)
        # Its queue goes to the others (a gateway retries); its batches in service finish within the
        # notice (seconds against 30–120 s). A replacement starts at once.
        waiting = list(replica.queue)
        replica.hand_over_queue()
        for request_id in waiting:
            if self.ready:
                self._route(request_id, now)
            else:
                self._hold_in_activator(request_id, now)
        self._start_replica(now)

    def _drained(self, replica: Replica, now: float | None = None) -> None:
        """`replica` has finished its work, at `now` (the clock's time unless given)."""
        now = self.env.now if now is None else now
        self.draining.discard(replica)
        self.levels.serving_executors.add(now, -self.config.instances)
        on_spot = replica in self.spot
        self.spot.discard(replica)  # it no longer counts toward the fleet's spot share
        reclaim_s = self._reclaimed_at.pop(replica, now)
        if reclaim_s > now:
            self.env.timeout(reclaim_s - self.env.now, on_spot).callbacks.append(self._on_reclaimed)
        else:
            self._stop_billing(on_spot, now)

    def _on_reclaimed(self, event: simpy.Event) -> None:
        self._stop_billing(bool(event.value), self.env.now)

    def _stop_billing(self, on_spot: bool, now: float) -> None:
        self.levels.billed.add(now, -1)
        if on_spot:
            self.levels.billed_spot.add(now, -1)

    # -- requests --------------------------------------------------------------------------------

    def _finished(self, count: int) -> None:
        self.pending -= count
        if self.pending == 0 and self.arrivals_done and not self.drained.triggered:
            self.drained.succeed()

    def _answer_cache_hits(self, first_id: int, times: np.ndarray) -> np.ndarray:
        """Book this chunk's cache hits (answered without the model); returns the miss mask."""
        cache = self.serving.cache
        if cache.hit_ratio <= 0:
            return np.ones(times.size, dtype=bool)
        hit = self._cache_rng.random(times.size) < cache.hit_ratio
        rows = np.flatnonzero(hit) + (first_id - self.log.base)
        log = self.log
        log.cache_hit[rows] = True
        log.start_s[rows] = times[hit]
        log.end_s[rows] = times[hit] + (cache.latency_ms + self.serving.overhead_ms) / 1000.0
        log.batch_size[rows] = 0
        log.outcome[rows] = COMPLETED
        return ~hit

    def _hold_in_activator(self, request_id: int, now: float) -> None:
        zero = self.serving.zero_replicas
        if zero.action == "reject" or (zero.buffer_capacity is not None and len(self.buffer) >= zero.buffer_capacity):
            row = request_id - self.log.base
            self.log.outcome[row] = REJECTED
            self.log.end_s[row] = now
            self._finished(1)
            return
        self.buffer.append(request_id)
        if self.live is not None:
            self.live.concurrency.add(now, 1)
        if self.on_buffered is not None:
            self.on_buffered(now)

    def expire_buffer(self, now: float) -> None:
        """Requests in the activator past their deadline leave as timed out (at the deadline)."""
        timeout_s = self.config.timeout_s
        if timeout_s is None:
            return
        log = self.log
        expired = 0
        while self.buffer:
            row = self.buffer[0] - log.base
            deadline = log.arrival_s[row] + timeout_s
            if deadline > now:
                break
            self.buffer.popleft()
            log.outcome[row] = TIMED_OUT
            log.end_s[row] = deadline
            expired += 1
        if expired:
            if self.live is not None:
                self.live.concurrency.add(max(now, self.live.concurrency.last_s), -expired)
            self._finished(expired)

    def _flush_buffer(self, now: float) -> None:
        self.expire_buffer(now)
        while self.buffer and self.ready:
            if self.live is not None:
                self.live.concurrency.add(now, -1)  # leaves the activator; the replica counts it again
            self._route(self.buffer.popleft(), now)

    def _route(self, request_id: int, t: float) -> None:
        ready = self.ready
        if len(ready) == 1:
            ready[0].enqueue(request_id, t)
            return
        if self.config.timeout_s is not None:
            for replica in ready:
                replica.expire(t)
        ready[self.balancer.pick(self.loads)].enqueue(request_id, t)

    def start(self, chunks: Iterator[np.ndarray]) -> None:
        """Begin feeding arrivals (drawn lazily, chunk by chunk) into the fleet."""
        self._chunks = chunks
        self._times: list[float] = []
        self._ids: Sequence[int] = []
        self._next = 0
        # Begin inside the run, once every other process is on the kernel's schedule: arrival
        # lookahead may only skip ahead of events that already exist.
        self.env.timeout(0).callbacks.append(self._begin)

    def _begin(self, _event: simpy.Event) -> None:
        self._on_arrival(None)

    def _load_chunk(self) -> bool:
        for times in self._chunks:
            first_id = self.log.append_arrivals(times)
            if self.serving.cache.hit_ratio > 0:
                miss = self._answer_cache_hits(first_id, times)
                self._ids = (np.flatnonzero(miss) + first_id).tolist()
                self._times = times[miss].tolist()
            else:  # every request goes to the model: ids in a row, times as the log already listed them
                self._ids = range(first_id, first_id + times.size)
                self._times = self.log.recent_s
            self._next = 0
            if self._ids:
                return True
        return False

    def _on_arrival(self, due: simpy.Event | None) -> None:
        """Route the arrival whose timer fired, then every later one that comes before the next
        kernel event (nothing can change the fleet's state in between, so they are handled right
        away at their own timestamps), then set the timer of the next one."""
        env = self.env
        times, ids = self._times, self._ids
        count = len(times)
        i = self._next
        peek = env.peek
        pick = self.balancer.pick
        expire_first = self.config.timeout_s is not None
        routed = 0  # counted locally and added on the way out (nothing reads the totals meanwhile)
        # Membership only changes on kernel events, and none runs inside this loop: the ready list,
        # the loads list and a lone replica's enqueue are read once (re-read after the activator,
        # which may call into the autoscaler).
        ready, loads = self.ready, self.loads
        lone = ready[0].enqueue if len(ready) == 1 else None
        while True:
            if i >= count:
                if not self._load_chunk():
                    self.pending += routed
                    self.arrived += routed
                    self.arrivals_done = True
                    self._next = i
                    self._finished(0)
                    return
                times, ids, i = self._times, self._ids, 0
                count = len(times)
                continue
            t = times[i]
            if due is None and t >= peek():
                self.pending += routed
                self.arrived += routed
                self._next = i
                env.timeout(t - env.now).callbacks.append(self._on_arrival)
                return
            due = None
            routed += 1
            if lone is not None:
                lone(ids[i], t, t)
            elif ready:
                if expire_first:
                    for replica in ready:
                        replica.expire(t)
                ready[pick(loads)].enqueue(ids[i], t, t)  # `_route`, inlined on the hot path
            else:
                self._hold_in_activator(ids[i], t)
                ready, loads = self.ready, self.loads
                lone = ready[0].enqueue if len(ready) == 1 else None
            i += 1

    # -- observation -----------------------------------------------------------------------------

    def in_flight_now(self) -> int:
        """Requests queued, in service or waiting in the activator at this moment."""
        return sum(self.loads) + len(self.buffer) + sum(r.queued_or_in_service() for r in self.draining)

    def sample(self) -> dict[str, float]:
        """Fleet-wide metrics now, for autoscalers: the integrals of concurrency and busy executors
        since t = 0, the requests waiting (a gauge), and the cumulative arrivals."""
        now = self.env.now
        self.expire_buffer(now)
        queued = len(self.buffer)
        for replica in (*self.ready, *self.draining):
            replica.expire(now)
            queued += len(replica.queue)
        live = self.live if self.live is not None else LiveMetrics()
        return {"concurrency": live.concurrency.area_at(now), "busy": live.busy.area_at(now),
                "queue": float(queued), "arrivals": float(self.arrived)}  # fmt: skip
