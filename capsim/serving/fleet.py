"""A real-time fleet's control plane on the SimPy kernel: replicas that come and go, cold starts and
warm pools, draining, spot interruptions, the activator (requests waiting for a first replica),
the response cache's draws, and billing. Its data plane — arrivals, load balancing, each replica's
front end, queue, batcher and executors — is the compiled event loop
(capsim.serving.dataplane.fleet.CompiledFleet implements the abstract methods below).

Replica lifecycle: starting (node provisioning unless a warm node is free, image pull, model load)
→ ready (in the balancer) → draining (out of the balancer, finishing its queue) → gone. Billing runs
from the start of provisioning to the end of draining; warm-pool nodes are billed all the time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import simpy

from capsim.metrics.live import LiveMetrics
from capsim.metrics.request_log import COMPLETED, REJECTED, TIMED_OUT, RequestLog
from capsim.metrics.steps import StepSeries
from capsim.rng import RandomStreams
from capsim.servicetime.base import ServiceTimeModel

if TYPE_CHECKING:
    from capsim.scenario.schema import RealtimeServing


@dataclass(frozen=True)
class ReplicaConfig:
    """What the control plane (and the autoscalers) read of a replica's shape."""

    instances: int  # model executors per replica
    timeout_s: float | None  # a request still queued this long leaves (None: never)


class ReplicaHandle(Protocol):
    """A replica as the control plane holds it (its requests live in the data plane)."""

    index: int  # its id in the request log

    def queued_or_in_service(self) -> int:
        """Requests in its front end, queue or batches (call `expire` first when they can time out)."""
        ...

    def expire(self, now: float) -> None:
        """Time out its queued requests past their deadline at `now`."""
        ...

    def start_draining(self, now: float) -> None:
        """It has left the balancer: finish its work, then report drained (`RealtimeFleet._drained`)."""
        ...

    def hand_over_queue(self) -> list[int]:
        """Give up every queued request (batches in service stay); their ids, oldest first."""
        ...

    def book_in_service(self) -> None:
        """End of run: book its batches still in service (they stay in flight)."""
        ...


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


class RealtimeFleet(ABC):
    """Replicas behind a load balancer, fed by one arrival stream: the control plane, with the data
    plane's entry points abstract."""

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
            timeout_s=None if serving.timeout_ms is None else serving.timeout_ms / 1000.0,
        )
        self.all_replicas: list[ReplicaHandle] = []  # every replica ever created; index = id in the request log
        self.ready: list[ReplicaHandle] = []  # in the balancer, in this order
        self.draining: set[ReplicaHandle] = set()
        self.starting: list[_Starting] = []
        self.buffer: deque[int] = deque()  # the activator: requests waiting for a first ready replica
        self.on_buffered: Callable[[float], None] | None = None  # pokes the autoscaler (Knative's activator)
        # Integrated metrics cost a little on every request: kept only when an autoscaler reads them.
        self.live = LiveMetrics() if serving.autoscaling is not None else None
        self.levels = FleetLevels(serving.replicas, serving.cold_start.warm_pool)
        self._warm_nodes = serving.cold_start.warm_pool
        self._coldstart_rng = streams.stream("coldstart")
        self._spot_rng = streams.stream("spot")
        self.spot: set[ReplicaHandle] = set()
        self._reclaimed_at: dict[ReplicaHandle, float] = {}  # interrupted spot replicas: end of their notice
        self._spot_starting = 0
        self.spot_interruptions = 0
        for _ in range(serving.replicas):
            on_spot = self._take_spot_slot()
            self._make_ready(self._new_replica(), on_spot)
        self._cache_rng = streams.stream("cache")

    # -- the data plane's entry points -----------------------------------------------------------

    @abstractmethod
    def _new_replica(self) -> ReplicaHandle:
        """A new replica in the data plane (appended to `all_replicas`), not yet in the balancer."""

    @abstractmethod
    def _rebuild_loads(self) -> None:
        """`ready` changed: the balancer's list of replicas follows it."""

    @abstractmethod
    def _route(self, request_id: int, t: float) -> None:
        """Route one request at `t` through the balancer (the activator hands it over)."""

    @abstractmethod
    def start(self, chunks: Iterator[np.ndarray]) -> None:
        """Begin feeding arrivals (numpy chunks of arrival times, drawn lazily) into the fleet."""

    @abstractmethod
    def in_flight_now(self) -> int:
        """Requests queued, in service or waiting in the activator at this moment."""

    @abstractmethod
    def sample(self) -> dict[str, float]:
        """Fleet-wide metrics now, for autoscalers: the integrals of concurrency and busy executors
        since t = 0, the requests waiting (a gauge), and the cumulative arrivals."""

    # -- membership ------------------------------------------------------------------------------

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

    def _make_ready(self, replica: ReplicaHandle, on_spot: bool = False) -> None:
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

    def _drain(self, replica: ReplicaHandle) -> None:
        now = self.env.now
        self.ready.remove(replica)
        self._rebuild_loads()
        self.levels.ready.set(now, len(self.ready))
        self.draining.add(replica)
        replica.start_draining(now)

    def _on_interruption_notice(self, event: simpy.Event) -> None:
        replica: ReplicaHandle = event.value  # type: ignore[assignment]
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
        for request_id in replica.hand_over_queue():
            if self.ready:
                self._route(request_id, now)
            else:
                self._hold_in_activator(request_id, now)
        self._start_replica(now)

    def _drained(self, replica: ReplicaHandle, now: float | None = None) -> None:
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
