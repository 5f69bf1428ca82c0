"""The LLM fleet's control plane on SimPy: replicas that start after a cold start and leave by
draining, their counts and billing (capsim.serving.pool: the pull modes' `PoolLevels` and
`ColdStarter`). Autoscalers read the engines' signals and scale the pool through
capsim/serving/llm/scaling.py.

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
    FREE,
    I_N_READY,
    L_BUSY,
    L_RUNNING,
)
from capsim.serving.pool import ColdStarter, PoolLevels


class LlmPool:
    """Engine replicas as an autoscaler scales them (capsim.serving.llm.scaling.ScaledEngines):
    `desired`, `starter` (cold starts in progress) and `scale_to`."""

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
