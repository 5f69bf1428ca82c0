"""A real-time fleet: the arrival stream, the response cache, the load balancer and the replicas.

Arrivals are drawn in numpy chunks and fed by a chain of timer events (one pending at a time);
replicas are event-driven state machines. Nothing is ever created per request but its timer.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import simpy

from capsim.metrics.request_log import COMPLETED, RequestLog
from capsim.rng import RandomStreams
from capsim.scenario import RealtimeServing
from capsim.servicetime.base import ServiceTimeModel
from capsim.serving.balancer import make_balancer
from capsim.serving.replica import Replica, ReplicaConfig


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
        self.pending = 0  # requests dispatched to replicas and not yet finished
        self.arrivals_done = False
        self.drained = env.event()
        config = ReplicaConfig(
            instances=serving.instances_per_replica,
            max_batch_size=serving.batching.max_batch_size,
            max_wait_s=serving.batching.max_wait_ms / 1000.0,
            queue_capacity=serving.queue_capacity,
            timeout_s=None if serving.timeout_ms is None else serving.timeout_ms / 1000.0,
            overhead_s=serving.overhead_ms / 1000.0,
        )
        self.loads = [0] * serving.replicas  # outstanding requests per replica, for the balancer
        self.replicas = [
            Replica(env, i, config, service.sampler(streams.stream(f"service/replica-{i}")), log, self._finished,
                    self.loads)
            for i in range(serving.replicas)
        ]  # fmt: skip
        self.balancer = make_balancer(serving.load_balancer, streams.stream("balancer"))
        self._cache_rng = streams.stream("cache")

    @property
    def executors(self) -> int:
        """Model executors in the fleet."""
        return len(self.replicas) * self.serving.instances_per_replica

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

    def start(self, chunks: Iterator[np.ndarray]) -> None:
        """Begin feeding arrivals (drawn lazily, chunk by chunk) into the fleet."""
        self._chunks = chunks
        self._times: list[float] = []
        self._ids: list[int] = []
        self._next = 0
        self._on_arrival(None)

    def _load_chunk(self) -> bool:
        for times in self._chunks:
            first_id = self.log.append_arrivals(times)
            miss = self._answer_cache_hits(first_id, times)
            self._ids = (np.flatnonzero(miss) + first_id).tolist()
            self._times = times[miss].tolist()
            self._next = 0
            if self._ids:
                return True
        return False

    def _on_arrival(self, due: simpy.Event | None) -> None:
        """Route the arrival whose timer fired, then every later one that comes before the next
        kernel event (nothing can change the fleet's state in between, so they are handled right
        away at their own timestamps), then set the timer of the next one."""
        env, replicas, balancer, loads = self.env, self.replicas, self.balancer, self.loads
        single = len(replicas) == 1
        expire_first = self.serving.timeout_ms is not None
        times, ids = self._times, self._ids
        count = len(times)
        i = self._next
        peek = env.peek
        while True:
            if i >= count:
                if not self._load_chunk():
                    self.arrivals_done = True
                    self._next = i
                    self._finished(0)
                    return
                times, ids, i = self._times, self._ids, 0
                count = len(times)
                continue
            t = times[i]
            if due is None and t >= peek():
                self._next = i
                env.timeout(t - env.now).callbacks.append(self._on_arrival)
                return
            due = None
            self.pending += 1
            if single:
                replicas[0].enqueue(ids[i], t)
            else:
                if expire_first:
                    for replica in replicas:
                        replica.expire(t)
                replicas[balancer.pick(loads)].enqueue(ids[i], t)
            i += 1
