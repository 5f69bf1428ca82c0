"""A real-time fleet: the arrival stream, the response cache, the load balancer and the replicas.

One SimPy process feeds the arrivals (drawn in numpy chunks), one process runs each executor; no
process is ever created per request.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import numpy as np
import simpy

from capsim.metrics.levels import Level
from capsim.metrics.request_log import COMPLETED, RequestLog
from capsim.rng import RandomStreams
from capsim.scenario import RealtimeServing
from capsim.servicetime.base import ServiceTimeModel
from capsim.serving.balancer import make_balancer
from capsim.serving.replica import Replica, ReplicaConfig, SharedLevels


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
        self.levels = SharedLevels(busy_executors=Level(), in_service=Level())
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
        self.replicas = [
            Replica(env, i, config, service.sampler(streams.stream(f"service/replica-{i}")), log, self.levels,
                    self._finished)
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
        if self.arrivals_done and self.pending == 0 and not self.drained.triggered:
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

    def feed(self, chunks: Iterator[np.ndarray]) -> Generator[simpy.Event, Any, None]:
        """The arrival process: one timeout per request that reaches the replicas."""
        env, replicas, balancer = self.env, self.replicas, self.balancer
        single = len(replicas) == 1
        for times in chunks:
            first_id = self.log.append_arrivals(times)
            miss = self._answer_cache_hits(first_id, times)
            ids = (np.flatnonzero(miss) + first_id).tolist()
            for request_id, t in zip(ids, times[miss].tolist(), strict=True):
                delay = t - env.now
                if delay > 0:
                    yield env.timeout(delay)
                self.pending += 1
                replica = replicas[0] if single else replicas[balancer.pick(replicas)]
                replica.enqueue(request_id)
        self.arrivals_done = True
        if self.pending == 0 and not self.drained.triggered:
            self.drained.succeed()
