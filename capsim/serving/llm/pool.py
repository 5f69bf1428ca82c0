"""The LLM fleet's control plane on SimPy: replicas that start after a cold start and leave by
draining, their counts and billing (capsim.serving.pool: the pull modes' `PoolLevels` and
`ColdStarter`), and the reads of KEDA on the engine's gauges — `vllm:num_requests_waiting`
(`metric: queue_length`) or waiting + running (`metric: concurrency`), as the vLLM production stack
and KServe scale vLLM (docs/model.md "LLM serving").

Every control action first advances the compiled plane to its instant (`LlmFleet.advance_to`) and
books the replicas that finished draining before it, so a decision sees the engines as they are.
"""

from __future__ import annotations

import numpy as np
import simpy

from capsim.serving.coldstart import ColdStart
from capsim.serving.llm.fleet import LlmFleet
from capsim.serving.llm.kernel import start_draining
from capsim.serving.llm.plane import (
    DRAINED,
    F_LEVEL_S,
    FREE,
    I_ARRIVED,
    I_N_READY,
    I_RUNNING,
    I_WAITING,
    L_BUSY,
    L_RUNNING,
    L_WAITING,
)
from capsim.serving.pool import ColdStarter, PoolLevels


class LlmPool:
    """Engine replicas as KEDA scales them: `desired`, `starter` (cold starts in progress) and
    `scale_to`, the pool protocol of capsim.serving.pull_run.keda_controller."""

    def __init__(self, env: simpy.Environment, fleet: LlmFleet, replicas: int, cold: ColdStart,
                 rng: np.random.Generator, ticks: np.ndarray) -> None:  # fmt: skip
        self.env = env
        self.fleet = fleet
        areas = fleet.plane.areas  # never reallocated: the plane's growth keeps it
        self.levels = PoolLevels(replicas, cold.warm_pool, ticks, areas[L_BUSY], areas[L_RUNNING])
        self.starter = ColdStarter(env, cold, rng, self.levels)
        self.desired = replicas
        for _ in range(replicas):
            fleet.add_replica(0.0)

    def sync(self) -> float:
        """Advance the data plane to now and book the replicas that drained before; returns now."""
        now = float(self.env.now)
        self.fleet.advance_to(now)
        p = self.fleet.plane
        done = np.flatnonzero(p.slot_state == DRAINED)
        for slot in done[np.argsort(p.drained_s[done], kind="stable")]:
            self.levels.billed.add(float(p.drained_s[slot]), -1)
            p.slot_state[slot] = FREE
        return now

    def ready(self) -> int:
        """Replicas in the balancer."""
        return int(self.fleet.plane.ints[I_N_READY])

    def read(self, now: float) -> tuple[float, float, float]:
        """KEDA's inputs at `now` (capsim.autoscale.view.METRICS): the time integral since 0 of
        waiting + running requests (the policy averages it over its window), the requests waiting
        now, and the requests arrived so far."""
        self.sync()
        p = self.fleet.plane
        outstanding = int(p.ints[I_RUNNING] + p.ints[I_WAITING])
        # the integral up to the last event the loop handled, plus the level since (constant till now)
        area = float(p.areas[L_RUNNING].sum() + p.areas[L_WAITING].sum())
        area += outstanding * (now - float(p.floats[F_LEVEL_S]))
        return area, float(p.ints[I_WAITING]), float(p.ints[I_ARRIVED])

    def scale_to(self, desired: int) -> None:
        """Start replicas (after a cold start) or remove them until `desired` are ready or starting:
        a pending start is cancelled first, then the newest ready replica drains."""
        now = self.sync()
        self.desired = desired
        self.levels.desired.set(now, desired)
        current = self.ready() + len(self.starter.pending)
        for _ in range(desired - current):
            self.starter.start(self._became_ready)
        for _ in range(current - desired):
            if self.starter.cancel_one():
                continue
            p = self.fleet.plane
            ready = p.ready[: self.ready()]
            if ready.size == 0:
                break
            newest = int(ready[np.argmax(p.slot_replica[ready])])
            start_draining(p, newest, now)
            self.levels.ready.set(now, self.ready())
        self.sync()  # a replica idle when asked to leave has drained at once

    def _became_ready(self) -> None:
        now = self.sync()
        self.fleet.add_replica(now)
        self.levels.ready.set(now, self.ready())
